//! A fleet simulator: many light hawkBit DDI clients in one process, for scale tests and
//! benchmarks of keel-server (binary `keel-fleet`, docs/scale-out.md).
//!
//! Each simulated device is one tokio task that does what a DDI client does: poll its controller
//! base, follow `deploymentBase` (optionally fetch the artifact: `HEAD`, a `Range` of it, or all
//! of it), report `proceeding` and then `closed` (success, or failure for a configured share of
//! devices), confirm `cancelAction`s, and sleep `config.polling.sleep` (or a fixed interval) with
//! jitter. Devices are spread over several server base URLs and fail over to the next one when a
//! request cannot reach theirs (a killed replica), re-basing the server's absolute links.
//! Latencies go into HDR histograms per request kind; [`FleetReport`] is the JSON output.
//!
//! Credentials: a device `<prefix><n>` authenticates with `TargetToken` [`device_token`]
//! (derived from a seed, so registering and running need not exchange token lists) or with the
//! tenant's `GatewayToken`. [`registration_sql`] pre-registers N such devices directly in the
//! database (one statement per 1000 devices, fast enough for 100 000).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How a device authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `TargetToken` per device, derived from this seed ([`device_token`]).
    TargetTokens {
        /// Secret the per-device tokens are derived from; registration and the run must use
        /// the same one.
        seed: String,
    },
    /// The tenant's `GatewayToken`, shared by all devices.
    Gateway(String),
}

/// What a device fetches of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// Nothing.
    None,
    /// `HEAD` only (checks the link and the size).
    Head,
    /// `Range: bytes=0-(n-1)`: the first n bytes.
    Range(u64),
    /// The whole artifact, checked against its sha256.
    Full,
}

impl std::str::FromStr for Download {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Download::None),
            "head" => Ok(Download::Head),
            "full" => Ok(Download::Full),
            _ => match text.strip_prefix("range:").map(str::parse) {
                Some(Ok(n)) if n > 0 => Ok(Download::Range(n)),
                _ => Err(format!(
                    "download mode {text:?}: expected none, head, range:BYTES or full"
                )),
            },
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Server base URLs (`http://host:port`); device n starts on `servers[n % len]`.
    pub servers: Vec<String>,
    /// Tenant name in the DDI paths (`/<tenant>/controller/v1/<id>`).
    pub tenant: String,
    /// Controller ids are `<prefix><n>` with n zero-padded to 6 digits, n in `first..first+devices`.
    pub prefix: String,
    /// Number of the first simulated device.
    pub first: u64,
    /// Number of simulated devices (one tokio task each).
    pub devices: u64,
    /// How every device authenticates.
    pub auth: Auth,
    /// Poll interval; `None`: the server's `config.polling.sleep`.
    pub interval: Option<Duration>,
    /// Each sleep is the interval times a uniform factor in `1 ± jitter`.
    pub jitter: f64,
    /// What a device fetches of each artifact of a deployment.
    pub download: Download,
    /// Share of devices (0..1) that report `closed`/`failure` instead of success.
    pub failure_ratio: f64,
    /// `proceeding` reports before the final one.
    pub progress_steps: u32,
    /// Most requests in flight at once (the HTTP connection pool follows it).
    pub max_in_flight: usize,
    /// Stop after this long (`None`: until [`run`]'s stop signal or `until_closed`).
    pub duration: Option<Duration>,
    /// Stop once this many actions were closed (success or failure) by the fleet.
    pub until_closed: Option<u64>,
    /// Seed for the start offsets and jitter.
    pub seed: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            servers: vec!["http://127.0.0.1:8080".into()],
            tenant: "default".into(),
            prefix: "fleet".into(),
            first: 0,
            devices: 100,
            auth: Auth::TargetTokens {
                seed: "keel-fleet".into(),
            },
            interval: None,
            jitter: 0.1,
            download: Download::Head,
            failure_ratio: 0.0,
            progress_steps: 1,
            max_in_flight: 256,
            duration: None,
            until_closed: None,
            seed: 1,
        }
    }
}

/// The controller id of device n.
pub fn controller_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:06}")
}

/// The `TargetToken` of a device: 32 hex characters of sha256(seed, controller id).
pub fn device_token(seed: &str, controller_id: &str) -> String {
    let digest = Sha256::digest(format!("keel-fleet\0{seed}\0{controller_id}").as_bytes());
    hex(&digest[..16])
}

use hex::encode as hex;

/// SQL (accepted by both `sqlite3` and `psql`) that registers devices `first..first+count` of
/// tenant `tenant` with their derived tokens (keel-server stores sha256 hex of a token) and the
/// tag `tag`, in one transaction. Direct registration is for benchmarks and tests of large
/// fleets: the management API registers one device per request.
pub fn registration_sql(
    tenant: &str,
    prefix: &str,
    first: u64,
    count: u64,
    seed: &str,
    tag: &str,
    now_ms: i64,
) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = String::from("BEGIN;\n");
    let ids: Vec<u64> = (first..first.saturating_add(count)).collect();
    for chunk in ids.chunks(1000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|&n| {
                let id = controller_id(prefix, n);
                let hash = hex(Sha256::digest(device_token(seed, &id).as_bytes()));
                format!("({},{})", quote(&id), quote(&hash))
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO targets (tenant_id, controller_id, name, token_hash, created_at) \
             SELECT t.id, v.column1, v.column1, v.column2, {now_ms} FROM tenants t, (VALUES {}) AS v \
             WHERE t.name = {};\n",
            rows.join(","),
            quote(tenant)
        ));
    }
    if !tag.is_empty() {
        let pattern = format!("{}%", prefix.replace(['%', '_'], ""));
        sql.push_str(&format!(
            "INSERT INTO target_tags (target_id, tag) SELECT id, {} FROM targets \
             WHERE controller_id LIKE {} AND tenant_id = (SELECT id FROM tenants WHERE name = {}) \
             ON CONFLICT DO NOTHING;\n",
            quote(tag),
            quote(&pattern),
            quote(tenant)
        ));
    }
    sql.push_str("COMMIT;\n");
    sql
}

/// Latency summary of one request kind, in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Requests measured: those answered with a status below 500.
    pub count: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest request.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// What a fleet run did (the JSON `keel-fleet run` prints).
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetReport {
    /// Number of simulated devices ([`FleetConfig::devices`]).
    pub devices: u64,
    /// Number of server base URLs the devices were spread over.
    pub servers: usize,
    /// Wall-clock duration of the run, in seconds.
    pub elapsed_s: f64,
    /// `devices / interval` when the interval is fixed (`None`: the server decides).
    pub offered_polls_per_s: Option<f64>,
    /// Polls of the controller base answered 200.
    pub polls: u64,
    /// `polls / elapsed_s`: the achieved poll rate.
    pub polls_per_s: f64,
    /// Requests that got no answer or a 5xx (each is retried on the next server).
    pub errors: u64,
    /// Answers other than 2xx/5xx where a 2xx was expected (4xx other than 410).
    pub rejected: u64,
    /// Devices that switched servers after a failed request.
    pub failovers: u64,
    /// `deploymentBase` documents fetched (200).
    pub deployments: u64,
    /// Artifact requests made (`HEAD`, range or full, per [`FleetConfig::download`]); a full
    /// download is counted only if its sha256 matched.
    pub downloads: u64,
    /// Feedback messages posted (`proceeding` steps, final reports, cancel confirmations).
    pub feedbacks: u64,
    /// Actions this fleet closed with success / failure (200 to the final report).
    pub closed_success: u64,
    /// Actions this fleet closed with failure ([`FleetConfig::failure_ratio`] of the devices).
    pub closed_failure: u64,
    /// Final reports answered 410 Gone after a retry: the first try had been committed.
    pub closed_already: u64,
    /// `cancelAction`s confirmed.
    pub canceled: u64,
    /// Per request kind: poll, deployment, download, feedback, cancel.
    pub latency: BTreeMap<String, Latency>,
}

#[derive(Default)]
struct Counters {
    polls: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    failovers: AtomicU64,
    deployments: AtomicU64,
    downloads: AtomicU64,
    feedbacks: AtomicU64,
    closed_success: AtomicU64,
    closed_failure: AtomicU64,
    closed_already: AtomicU64,
    canceled: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Poll,
    Deployment,
    Download,
    Feedback,
    Cancel,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Poll,
        Kind::Deployment,
        Kind::Download,
        Kind::Feedback,
        Kind::Cancel,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Poll => "poll",
            Kind::Deployment => "deployment",
            Kind::Download => "download",
            Kind::Feedback => "feedback",
            Kind::Cancel => "cancel",
        }
    }
}

struct Shared {
    config: FleetConfig,
    client: reqwest::Client,
    in_flight: tokio::sync::Semaphore,
    counters: Counters,
    histograms: Vec<Mutex<Histogram<u64>>>,
    stop: tokio::sync::watch::Receiver<bool>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

/// Why a request did not give a usable answer.
enum Failure {
    /// No answer or a 5xx: the server is down or overloaded; try the next one.
    Unreachable,
    /// An answer that says no (4xx).
    Rejected,
}

/// A small deterministic random source per device (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parses DDI's `HH:MM:SS`.
fn parse_sleep(text: &str) -> Option<Duration> {
    let mut parts = text.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(Duration::from_secs(h * 3600 + m * 60 + s))
}

/// The path and query of an absolute link (the server it names may be down: the device sends it
/// to the server it currently uses, as one load-balanced address would).
fn link_path(href: &str) -> String {
    match reqwest::Url::parse(href) {
        Ok(url) => match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        },
        Err(_) => href.to_string(),
    }
}

struct Device {
    id: String,
    authorization: String,
    server: usize,
    rng: Rng,
    fails: bool,
}

impl Shared {
    fn record(&self, kind: Kind, started: Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = self.histograms.get(kind as usize) {
            let mut histogram = histogram.lock().unwrap_or_else(|p| p.into_inner());
            histogram.saturating_record(micros.max(1));
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// One request to the device's current server; on no answer / 5xx it moves the device to
    /// the next server and retries there (after a short pause), until stopped.
    async fn request(
        &self,
        device: &mut Device,
        kind: Kind,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        range: Option<u64>,
    ) -> Result<(u16, bytes::Bytes), Failure> {
        loop {
            if self.stopped() {
                return Err(Failure::Unreachable);
            }
            let url = format!(
                "{}{path}",
                self.config.servers[device.server].trim_end_matches('/')
            );
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header("Authorization", &device.authorization)
                .header("Accept", "application/hal+json");
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(n) = range {
                request = request.header("Range", format!("bytes=0-{}", n.saturating_sub(1)));
            }
            let permit = self.in_flight.acquire().await;
            let started = Instant::now();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(bytes) => Some((status, bytes)),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            drop(permit);
            match outcome {
                Some((status, bytes)) if status < 500 => {
                    self.record(kind, started);
                    if (200..300).contains(&status) || status == 410 {
                        return Ok((status, bytes));
                    }
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::Rejected);
                }
                _ => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if self.config.servers.len() > 1 {
                        device.server = (device.server + 1) % self.config.servers.len();
                        self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                    let pause = Duration::from_millis(200 + (device.rng.unit() * 800.0) as u64);
                    self.sleep(pause).await;
                }
            }
        }
    }

    async fn sleep(&self, duration: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    fn feedback(
        execution: &str,
        finished: &str,
        detail: String,
        step: Option<(u32, u32)>,
    ) -> Value {
        let mut result = json!({ "finished": finished });
        if let Some((cnt, of)) = step {
            result["progress"] = json!({ "cnt": cnt, "of": of });
        }
        json!({ "status": { "execution": execution, "result": result, "details": [detail] } })
    }

    fn closed(&self) -> u64 {
        self.counters.closed_success.load(Ordering::Relaxed)
            + self.counters.closed_failure.load(Ordering::Relaxed)
            + self.counters.closed_already.load(Ordering::Relaxed)
    }

    fn note_closed(&self) {
        if let Some(limit) = self.config.until_closed {
            if self.closed() >= limit {
                let _ = self.stop_tx.send(true);
            }
        }
    }

    /// Handles a deployment: fetch it, the artifacts as configured, report progress and the end.
    /// Returns whether the action was closed.
    async fn deploy(&self, device: &mut Device, href: &str) -> Result<bool, Failure> {
        let (status, body) = self
            .request(
                device,
                Kind::Deployment,
                reqwest::Method::GET,
                &link_path(href),
                None,
                None,
            )
            .await?;
        if status != 200 {
            return Ok(false);
        }
        self.counters.deployments.fetch_add(1, Ordering::Relaxed);
        let deployment: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(action_id) = deployment["id"].as_str().map(str::to_string) else {
            return Ok(false);
        };
        let chunks = deployment["deployment"]["chunks"].as_array().cloned();
        for chunk in chunks.unwrap_or_default() {
            for artifact in chunk["artifacts"].as_array().cloned().unwrap_or_default() {
                let Some(link) = artifact["_links"]["download-http"]["href"]
                    .as_str()
                    .or(artifact["_links"]["download"]["href"].as_str())
                else {
                    continue;
                };
                let (method, range) = match self.config.download {
                    Download::None => continue,
                    Download::Head => (reqwest::Method::HEAD, None),
                    Download::Range(n) => (reqwest::Method::GET, Some(n)),
                    Download::Full => (reqwest::Method::GET, None),
                };
                let (_, bytes) = self
                    .request(
                        device,
                        Kind::Download,
                        method,
                        &link_path(link),
                        None,
                        range,
                    )
                    .await?;
                if self.config.download == Download::Full {
                    let expected = artifact["hashes"]["sha256"].as_str().unwrap_or("");
                    if hex(Sha256::digest(&bytes)) != expected {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(Failure::Rejected);
                    }
                }
                self.counters.downloads.fetch_add(1, Ordering::Relaxed);
            }
        }
        let feedback_path = format!(
            "/{}/controller/v1/{}/deploymentBase/{action_id}/feedback",
            self.config.tenant, device.id
        );
        let steps = self.config.progress_steps;
        for step in 0..steps {
            let body = Self::feedback(
                "proceeding",
                "none",
                format!("keel-fleet: step {step}"),
                Some((step, steps)),
            );
            let (status, _) = self
                .request(
                    device,
                    Kind::Feedback,
                    reqwest::Method::POST,
                    &feedback_path,
                    Some(&body),
                    None,
                )
                .await?;
            self.counters.feedbacks.fetch_add(1, Ordering::Relaxed);
            if status == 410 {
                return Ok(false);
            }
        }
        let finished = if device.fails { "failure" } else { "success" };
        let body = Self::feedback("closed", finished, format!("keel-fleet: {finished}"), None);
        let (status, _) = self
            .request(
                device,
                Kind::Feedback,
                reqwest::Method::POST,
                &feedback_path,
                Some(&body),
                None,
            )
            .await?;
        self.counters.feedbacks.fetch_add(1, Ordering::Relaxed);
        let counter = match (status, device.fails) {
            (410, _) => &self.counters.closed_already,
            (_, true) => &self.counters.closed_failure,
            (_, false) => &self.counters.closed_success,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.note_closed();
        Ok(true)
    }

    /// Confirms a cancel request; returns whether it was confirmed.
    async fn cancel(&self, device: &mut Device, href: &str) -> Result<bool, Failure> {
        let path = link_path(href);
        let (status, _) = self
            .request(
                device,
                Kind::Cancel,
                reqwest::Method::GET,
                &path,
                None,
                None,
            )
            .await?;
        if status != 200 {
            return Ok(false);
        }
        let body = Self::feedback("closed", "success", "keel-fleet: canceled".into(), None);
        self.request(
            device,
            Kind::Feedback,
            reqwest::Method::POST,
            &format!("{}/feedback", path.split('?').next().unwrap_or(&path)),
            Some(&body),
            None,
        )
        .await?;
        self.counters.canceled.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// One device's life: poll, act, sleep, until stopped.
    async fn device(self: Arc<Self>, n: u64) {
        let id = controller_id(&self.config.prefix, n);
        let authorization = match &self.config.auth {
            Auth::TargetTokens { seed } => format!("TargetToken {}", device_token(seed, &id)),
            Auth::Gateway(token) => format!("GatewayToken {token}"),
        };
        let mut rng = Rng::new(self.config.seed ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let fails = rng.unit() < self.config.failure_ratio;
        let servers = self.config.servers.len().max(1) as u64;
        let mut device = Device {
            server: usize::try_from(n % servers).unwrap_or(0),
            id,
            authorization,
            rng,
            fails,
        };
        let poll_path = format!("/{}/controller/v1/{}", self.config.tenant, device.id);
        // Spread the first polls over one interval so the offered load is even from the start.
        let first = self.config.interval.unwrap_or(Duration::from_secs(1));
        self.sleep(first.mul_f64(device.rng.unit())).await;
        while !self.stopped() {
            // Boxed: an idle device (most of 100 000) then holds a pointer, not a request's state.
            let polled = Box::pin(self.request(
                &mut device,
                Kind::Poll,
                reqwest::Method::GET,
                &poll_path,
                None,
                None,
            ))
            .await;
            let mut sleep = self.config.interval;
            if let Ok((200, body)) = polled {
                self.counters.polls.fetch_add(1, Ordering::Relaxed);
                let base: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if sleep.is_none() {
                    sleep = base["config"]["polling"]["sleep"]
                        .as_str()
                        .and_then(parse_sleep);
                }
                let links = &base["_links"];
                // After finishing an action the device polls again at once (hawkBit clients do).
                if let Some(href) = links["cancelAction"]["href"].as_str() {
                    if let Ok(true) = Box::pin(self.cancel(&mut device, href)).await {
                        continue;
                    }
                } else if let Some(href) = links["deploymentBase"]["href"].as_str() {
                    if let Ok(true) = Box::pin(self.deploy(&mut device, href)).await {
                        continue;
                    }
                }
            }
            let base = sleep.unwrap_or(Duration::from_secs(300));
            let factor = 1.0 + self.config.jitter * (2.0 * device.rng.unit() - 1.0);
            self.sleep(base.mul_f64(factor.max(0.0))).await;
        }
    }
}

/// Runs the fleet until `stop` becomes true, `duration` passes or `until_closed` actions were
/// closed; returns what it did.
pub async fn run(
    config: FleetConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<FleetReport, String> {
    if config.servers.is_empty() {
        return Err("no server URL".into());
    }
    if !(0.0..=1.0).contains(&config.failure_ratio) {
        return Err("failure ratio must be within 0..1".into());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.max_in_flight)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let (stop_tx, own_stop) = tokio::sync::watch::channel(false);
    let histograms = Kind::ALL
        .iter()
        .map(|_| {
            Histogram::new_with_bounds(1, 120_000_000, 3)
                .map(Mutex::new)
                .map_err(|e| format!("histogram: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared {
        in_flight: tokio::sync::Semaphore::new(config.max_in_flight.max(1)),
        config: config.clone(),
        client,
        counters: Counters::default(),
        histograms,
        stop: own_stop,
        stop_tx,
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in config.first..config.first.saturating_add(config.devices) {
        tasks.spawn(shared.clone().device(n));
    }
    let deadline = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let mut own = shared.stop.clone();
    tokio::select! {
        _ = deadline => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
        _ = own.wait_for(|stopped| *stopped) => {}
    }
    let elapsed = started.elapsed();
    let _ = shared.stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(report(&shared, elapsed))
}

fn report(shared: &Shared, elapsed: Duration) -> FleetReport {
    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut latency = BTreeMap::new();
    for kind in Kind::ALL {
        let Some(histogram) = shared.histograms.get(kind as usize) else {
            continue;
        };
        let h = histogram.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            continue;
        }
        latency.insert(
            kind.name().to_string(),
            Latency {
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p90_us: h.value_at_quantile(0.9),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
                mean_us: h.mean(),
            },
        );
    }
    FleetReport {
        devices: shared.config.devices,
        servers: shared.config.servers.len(),
        elapsed_s: secs,
        offered_polls_per_s: shared
            .config
            .interval
            .map(|i| shared.config.devices as f64 / i.as_secs_f64().max(1e-9)),
        polls: get(&c.polls),
        polls_per_s: get(&c.polls) as f64 / secs,
        errors: get(&c.errors),
        rejected: get(&c.rejected),
        failovers: get(&c.failovers),
        deployments: get(&c.deployments),
        downloads: get(&c.downloads),
        feedbacks: get(&c.feedbacks),
        closed_success: get(&c.closed_success),
        closed_failure: get(&c.closed_failure),
        closed_already: get(&c.closed_already),
        canceled: get(&c.canceled),
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_modes_parse() {
        assert_eq!("head".parse(), Ok(Download::Head));
        assert_eq!("range:4096".parse(), Ok(Download::Range(4096)));
        assert!("range:0".parse::<Download>().is_err());
        assert!("some".parse::<Download>().is_err());
    }

    #[test]
    fn tokens_are_stable_and_distinct() {
        let a = device_token("s", &controller_id("dev", 1));
        assert_eq!(a, device_token("s", "dev000001"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, device_token("s", "dev000002"));
        assert_ne!(a, device_token("t", "dev000001"));
    }

    #[test]
    fn links_are_rebased() {
        assert_eq!(
            link_path("http://10.0.0.1:8080/default/controller/v1/d/deploymentBase/5?c=1"),
            "/default/controller/v1/d/deploymentBase/5?c=1"
        );
        assert_eq!(parse_sleep("00:05:01"), Some(Duration::from_secs(301)));
        assert_eq!(parse_sleep("5:00"), None);
    }

    #[test]
    fn registration_sql_names_every_device() {
        let sql = registration_sql("default", "dev", 0, 2500, "s", "fleet", 1);
        assert_eq!(sql.matches("INSERT INTO targets").count(), 3);
        assert!(sql.contains("'dev002499'"));
        assert!(!sql.contains("'dev002500'"));
        let hash = hex(Sha256::digest(device_token("s", "dev000000").as_bytes()));
        assert!(sql.contains(&hash));
    }
}
