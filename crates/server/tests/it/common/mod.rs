//! Test helpers: an in-process keel-server, a management API client and a small hawkBit DDI
//! device simulator (a real HTTP client per device: poll → deploymentBase → download → feedback).
#![allow(dead_code)]

pub mod browser;
pub mod replica;
pub mod s3;
pub mod swupdate;
pub mod tuf;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database, if the tests run against PostgreSQL (else SQLite in `dir`).
    pub database_url: Option<String>,
    /// The S3 server holding the artifacts with `KEEL_TEST_STORAGE=s3` (else files in `dir`).
    pub s3: Option<s3::S3Server>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut keel_server::Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = keel_server::Config::for_data_dir(dir.path());
        config.database_url = test_database_url();
        let s3 = test_object_store(&mut config);
        config.poll_interval = 1;
        config.scheduler_interval_ms = 100;
        adjust(&mut config);
        let database_url = config.database_url.clone();
        let server = keel_server::Server::bind(config).await.unwrap();
        let admin = server.created_admin_token.clone().unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            base,
            admin,
            dir,
            database_url,
            s3,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn mgmt(&self) -> Mgmt {
        Mgmt {
            client: Client::new(),
            base: self.base.clone(),
            token: Some(self.admin.clone()),
        }
    }

    /// A second handle on the server's database (as another keel-server process would open it).
    pub async fn open_store(&self) -> keel_server::store::Store {
        keel_server::store::Store::open(self.dir.path(), self.database_url.as_deref())
            .await
            .unwrap()
    }

    /// Everything the database stores, as bytes: SQLite's database and WAL files, or a `pg_dump`
    /// of the PostgreSQL database.
    pub fn database_contents(&self) -> Vec<u8> {
        match &self.database_url {
            Some(url) => postgres::cluster().dump(url),
            None => {
                let mut bytes = std::fs::read(self.dir.path().join("keel.db")).unwrap();
                bytes
                    .extend(std::fs::read(self.dir.path().join("keel.db-wal")).unwrap_or_default());
                bytes
            }
        }
    }

    /// Every row of every table except `skip`, as text, table by table (rows sorted): to prove a
    /// request changed nothing, on SQLite and PostgreSQL alike.
    pub async fn table_rows(
        &self,
        skip: &[&str],
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        use sqlx::{Column, Row};
        sqlx::any::install_default_drivers();
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("keel.db").display()),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let list = if self.database_url.is_some() {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        };
        let tables: Vec<String> = sqlx::query_scalar(list).fetch_all(&pool).await.unwrap();
        let mut all = std::collections::BTreeMap::new();
        for table in tables {
            if skip.contains(&table.as_str()) || table.starts_with("_sqlx") {
                continue;
            }
            let rows = sqlx::query(&format!("SELECT * FROM {table}"))
                .fetch_all(&pool)
                .await
                .unwrap();
            let mut text: Vec<String> = rows
                .iter()
                .map(|row| {
                    (0..row.columns().len())
                        .map(|i| {
                            let name = row.columns()[i].name().to_string();
                            let value = row
                                .try_get::<Option<i64>, _>(i)
                                .map(|v| format!("{v:?}"))
                                .or_else(|_| {
                                    row.try_get::<Option<String>, _>(i)
                                        .map(|v| format!("{v:?}"))
                                })
                                .or_else(|_| {
                                    row.try_get::<Option<Vec<u8>>, _>(i)
                                        .map(|v| format!("{v:?}"))
                                })
                                .or_else(|_| {
                                    row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}"))
                                })
                                .unwrap_or_else(|e| format!("<{e}>"));
                            format!("{name}={value}")
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            text.sort();
            all.insert(table, text);
        }
        pool.close().await;
        all
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Management API client.
#[derive(Clone)]
pub struct Mgmt {
    pub client: Client,
    pub base: String,
    pub token: Option<String>,
}

impl Mgmt {
    pub fn with_token(&self, token: Option<&str>) -> Mgmt {
        Mgmt {
            client: self.client.clone(),
            base: self.base.clone(),
            token: token.map(str::to_string),
        }
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.auth(self.client.request(method, format!("{}{path}", self.base)));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.send(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Creates a management API token (of the tenant this client acts on) and returns it.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let created = self
            .ok(
                reqwest::Method::POST,
                "/rest/v1/tokens",
                Some(json!({ "name": name, "role": role })),
            )
            .await;
        created["token"].as_str().unwrap().to_string()
    }

    /// Pre-registers a device and returns its token.
    pub async fn device(&self, controller_id: &str, tags: &[&str]) -> String {
        let value = self
            .ok(
                reqwest::Method::POST,
                "/rest/v1/targets",
                Some(json!({ "controllerId": controller_id, "tags": tags })),
            )
            .await;
        value["securityToken"].as_str().unwrap().to_string()
    }

    /// Creates module + artifact + distribution set; returns (set id, module id).
    pub async fn release(
        &self,
        name: &str,
        version: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> (i64, i64) {
        let module = self
            .ok(
                reqwest::Method::POST,
                "/rest/v1/softwaremodules",
                Some(json!({ "name": name, "version": version })),
            )
            .await;
        let module_id = module["id"].as_i64().unwrap();
        let response = self
            .auth(self.client.post(format!(
                "{}/rest/v1/softwaremodules/{module_id}/artifacts",
                self.base
            )))
            .query(&[("filename", filename)])
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        let set = self
            .ok(
                reqwest::Method::POST,
                "/rest/v1/distributionsets",
                Some(json!({ "name": name, "version": version, "modules": [module_id] })),
            )
            .await;
        (set["id"].as_i64().unwrap(), module_id)
    }

    pub async fn action(&self, controller_id: &str, action_id: i64) -> Value {
        self.ok(
            reqwest::Method::GET,
            &format!("/rest/v1/targets/{controller_id}/actions/{action_id}"),
            None,
        )
        .await
    }

    pub async fn rollout(&self, id: i64) -> Value {
        self.ok(
            reqwest::Method::GET,
            &format!("/rest/v1/rollouts/{id}"),
            None,
        )
        .await
    }

    /// Waits until `check` holds for the rollout, polling the management API.
    pub async fn wait_rollout(&self, id: i64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rollout = self.rollout(id).await;
            if check(&rollout) {
                return rollout;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {rollout:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Deterministic pseudo-random bytes (keel-testkit's test image generator): content only has
/// to differ between tests.
pub fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    image(u64::from(seed), len)
}

/// What a simulated device does with a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeed,
    Fail,
}

/// A hawkBit DDI device speaking plain HTTP, like SWUpdate's suricatta does.
#[derive(Clone)]
pub struct SimDevice {
    pub client: Client,
    pub base: String,
    pub tenant: String,
    pub id: String,
    pub auth: String,
}

#[derive(Debug, Default, Clone)]
pub struct Handled {
    pub action_id: Option<i64>,
    pub canceled: bool,
    /// Detail strings of every feedback the server acknowledged with 200.
    pub acked: Vec<String>,
}

impl SimDevice {
    pub fn new(base: &str, id: &str, token: &str) -> SimDevice {
        SimDevice {
            client: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: base.to_string(),
            tenant: "default".into(),
            id: id.to_string(),
            auth: format!("TargetToken {token}"),
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}/controller/v1/{}", self.base, self.tenant, self.id)
    }

    pub async fn get(&self, url: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(url)
            .header("Authorization", &self.auth)
            .send()
            .await
    }

    /// GET with this device's token and a `Range: bytes=<range>` header (e.g. `"100-199"`, `"100-"`).
    pub async fn get_range(&self, url: &str, range: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(url)
            .header("Authorization", &self.auth)
            .header("Range", format!("bytes={range}"))
            .send()
            .await
    }

    pub async fn get_json(&self, url: &str) -> (StatusCode, Value) {
        let response = self.get(url).await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn try_get_json(&self, url: &str) -> reqwest::Result<(StatusCode, Value)> {
        let response = self.get(url).await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> reqwest::Result<StatusCode> {
        let response = self
            .client
            .post(url)
            .header("Authorization", &self.auth)
            .json(body)
            .send()
            .await?;
        Ok(response.status())
    }

    pub async fn poll(&self) -> reqwest::Result<Value> {
        let response = self.get(&self.url()).await?;
        assert_eq!(response.status(), StatusCode::OK, "poll of {}", self.id);
        response.json().await
    }

    pub fn feedback(
        execution: &str,
        finished: &str,
        detail: &str,
        progress: Option<(i64, i64)>,
    ) -> Value {
        let mut result = json!({ "finished": finished });
        if let Some((cnt, of)) = progress {
            result["progress"] = json!({ "cnt": cnt, "of": of });
        }
        // Extra fields as SWUpdate sends them: the server must ignore them.
        json!({ "id": "", "time": "20260101T000000", "status": { "execution": execution, "result": result, "details": [detail] } })
    }

    /// Posts feedback, retrying while the server is unreachable (it may be restarting).
    /// Returns the final status code.
    pub async fn send_feedback(&self, url: &str, body: &Value) -> StatusCode {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.post_json(url, body).await {
                Ok(status) if status.is_server_error() => {}
                Ok(status) => return status,
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{}: server unreachable for 60 s",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One poll cycle: handles a cancel request or a deployment completely.
    /// `steps` progress feedbacks are sent before the final result.
    pub async fn cycle(&self, outcome: Outcome, steps: i64) -> reqwest::Result<Handled> {
        let mut handled = Handled::default();
        let base = self.poll().await?;
        let links = &base["_links"];
        if let Some(href) = links["cancelAction"]["href"].as_str() {
            let (status, cancel) = self.try_get_json(href).await?;
            assert_eq!(status, StatusCode::OK);
            let stop_id = cancel["cancelAction"]["stopId"]
                .as_str()
                .unwrap()
                .to_string();
            let detail = format!("{} canceled {stop_id}", self.id);
            let status = self
                .send_feedback(
                    &format!("{href}/feedback"),
                    &Self::feedback("closed", "success", &detail, None),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            handled.canceled = true;
            handled.action_id = stop_id.parse().ok();
            handled.acked.push(detail);
            return Ok(handled);
        }
        let Some(href) = links["deploymentBase"]["href"].as_str() else {
            return Ok(handled);
        };
        let (status, deployment) = self.try_get_json(href).await?;
        if status != StatusCode::OK {
            return Ok(handled);
        }
        let action_id: i64 = deployment["id"].as_str().unwrap().parse().unwrap();
        handled.action_id = Some(action_id);
        let feedback_url = format!("{}/deploymentBase/{action_id}/feedback", self.url());
        for chunk in deployment["deployment"]["chunks"].as_array().unwrap() {
            for artifact in chunk["artifacts"].as_array().unwrap() {
                let url = artifact["_links"]["download-http"]["href"]
                    .as_str()
                    .unwrap();
                let bytes = self.get(url).await?.bytes().await?;
                assert_eq!(bytes.len() as i64, artifact["size"].as_i64().unwrap());
                assert_eq!(
                    hex::encode(Sha256::digest(&bytes)),
                    artifact["hashes"]["sha256"].as_str().unwrap()
                );
            }
        }
        for step in 0..steps {
            let detail = format!("{} action {action_id} step {step}", self.id);
            let status = self
                .send_feedback(
                    &feedback_url,
                    &Self::feedback("proceeding", "none", &detail, Some((step, steps))),
                )
                .await;
            if status == StatusCode::GONE {
                return Ok(handled);
            }
            assert_eq!(status, StatusCode::OK, "{}", self.id);
            handled.acked.push(detail);
        }
        let (finished, word) = match outcome {
            Outcome::Succeed => ("success", "done"),
            Outcome::Fail => ("failure", "failed"),
        };
        let detail = format!("{} action {action_id} {word}", self.id);
        let status = self
            .send_feedback(
                &feedback_url,
                &Self::feedback("closed", finished, &detail, None),
            )
            .await;
        if status == StatusCode::OK {
            handled.acked.push(detail);
        }
        Ok(handled)
    }
}

/// The database a test server uses: `None` is SQLite in its data directory (the default); with
/// `KEEL_TEST_DATABASE=postgres` it is a fresh, empty database in a private PostgreSQL cluster
/// that this test process starts (Debian's `postgresql`; the test fails if it is missing).
pub fn test_database_url() -> Option<String> {
    match std::env::var("KEEL_TEST_DATABASE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => Some(postgres::cluster().create_database()),
        Ok(other) => panic!("KEEL_TEST_DATABASE={other:?}: expected sqlite or postgres"),
    }
}

/// Where a test server keeps artifacts: `None` is files in its data directory (the default);
/// with `KEEL_TEST_STORAGE=s3` an S3 server (s3s-fs, real SigV4 HTTP) started for this test server,
/// with `config` pointed at its bucket `keel` under the prefix `test`; `s3-presigned` also
/// redirects device downloads to pre-signed URLs.
pub fn test_object_store(config: &mut keel_server::Config) -> Option<s3::S3Server> {
    match std::env::var("KEEL_TEST_STORAGE").as_deref() {
        Err(_) | Ok("") | Ok("local") => None,
        Ok(kind @ ("s3" | "s3-presigned")) => {
            let server = s3::S3Server::start();
            server.create_bucket("keel");
            server.configure(config, "keel", "test");
            config.s3_presign_downloads = kind == "s3-presigned";
            Some(server)
        }
        Ok(other) => panic!("KEEL_TEST_STORAGE={other:?}: expected local, s3 or s3-presigned"),
    }
}

/// A fresh database in this process's private PostgreSQL cluster, whatever `KEEL_TEST_DATABASE` says.
pub fn postgres_database_url() -> String {
    postgres::cluster().create_database()
}

/// A PostgreSQL cluster private to this test process: created with initdb in a temporary
/// directory, listening only on a Unix socket there (no TCP port to collide with), with its
/// default durability (fsync on). A shell keeps it running until this process exits (its stdin
/// pipe closes, even on a crash), then stops it and deletes the directory.
mod postgres {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    const PORT: u16 = 5432;

    pub struct Cluster {
        dir: PathBuf,
        bin: PathBuf,
        next_database: AtomicU32,
        /// The shell that stops the cluster when its stdin (held here until exit) closes.
        _keeper: Mutex<Child>,
    }

    pub fn cluster() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(Cluster::start)
    }

    /// The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin).
    fn server_bin() -> PathBuf {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("postgres").exists().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin)| bin)
            .expect("PostgreSQL server not installed (apt-get install postgresql; see scripts/setup-debian.sh)")
    }

    fn run(command: &mut Command, what: &str) {
        let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl Cluster {
        fn start() -> Cluster {
            let bin = server_bin();
            let dir = tempfile::Builder::new()
                .prefix("keel-pg-")
                .tempdir()
                .unwrap()
                .keep();
            // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
            let as_root = std::fs::metadata(&dir).unwrap().uid() == 0;
            let as_owner = if as_root {
                run(
                    Command::new("chown").args(["postgres:", dir.to_str().unwrap()]),
                    "chown postgres: (is the postgresql package installed?)",
                );
                "setpriv --reuid=postgres --regid=postgres --clear-groups "
            } else {
                ""
            };
            let data = dir.join("data");
            // --no-sync only skips initdb's own flush of the template; the server runs with fsync on.
            run(
                Command::new("sh").arg("-c").arg(format!(
                    "{as_owner}\"$0\"/initdb -D \"$1\" -U postgres -A trust -E UTF8 --locale=C --no-sync"
                ))
                .arg(&bin)
                .arg(&data),
                "initdb",
            );
            let mut keeper = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{as_owner}\"$0\"/postgres -D \"$1/data\" -k \"$1\" -h '' -p {PORT} \
                     -c max_connections=400 -c fsync=on 2>\"$1/postgres.log\" & pg=$!; \
                     read _; kill -INT $pg; wait $pg; rm -rf \"$1\""
                ))
                .arg(&bin)
                .arg(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("sh");
            let deadline = Instant::now() + Duration::from_secs(60);
            let ready = || {
                Command::new(bin.join("pg_isready"))
                    .args(["-q", "-U", "postgres", "-h"])
                    .arg(&dir)
                    .args(["-p", &PORT.to_string()])
                    .status()
                    .is_ok_and(|status| status.success())
            };
            while !ready() {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                assert!(
                    Instant::now() < deadline && keeper.try_wait().unwrap().is_none(),
                    "PostgreSQL did not start:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Cluster {
                dir,
                bin,
                next_database: AtomicU32::new(0),
                _keeper: Mutex::new(keeper),
            }
        }

        fn psql(&self, sql: &str) -> std::process::Output {
            Command::new(self.bin.join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &PORT.to_string(), "-c", sql])
                .output()
                .expect("psql")
        }

        /// `pg_dump` of the database at `url` (made by `create_database`).
        pub fn dump(&self, url: &str) -> Vec<u8> {
            let without_query = url.split('?').next().unwrap_or(url);
            let name = without_query.rsplit('/').next().unwrap();
            let out = Command::new(self.bin.join("pg_dump"))
                .args(["-U", "postgres", "-d", name, "-h"])
                .arg(&self.dir)
                .args(["-p", &PORT.to_string()])
                .output()
                .expect("pg_dump");
            assert!(
                out.status.success(),
                "pg_dump {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }

        /// Creates an empty database and returns its URL.
        pub fn create_database(&self) -> String {
            let name = format!(
                "keel_test_{}",
                self.next_database.fetch_add(1, Ordering::SeqCst)
            );
            let out = self.psql(&format!("CREATE DATABASE {name}"));
            assert!(
                out.status.success(),
                "CREATE DATABASE {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            socket_url(&self.dir, &name)
        }
    }

    fn socket_url(dir: &Path, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/{database}?host={}",
            dir.display()
        )
    }
}

pub use keel_testkit::data::image;

/// A throwaway release signer (keel-testkit: self-signed P-256 certificate with the key usages
/// swupdate and keel-agent require) and its reproducible bundles.
pub struct Pki {
    pub signer: keel_testkit::pki::Identity,
    /// The certificate devices trust.
    pub cert: std::path::PathBuf,
    _pki: keel_testkit::pki::Pki,
}

impl Pki {
    /// A bundle (keel-bundle) from a TOML `manifest` whose image sources are `files`, signed by
    /// this signer, reproducible (SOURCE_DATE_EPOCH fixed).
    pub fn bundle(&self, manifest: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        keel_testkit::bundle::BundleBuilder::new(manifest)
            .files(files)
            .source_date_epoch(1_700_000_000)
            .sign(&self.signer)
    }
}

pub fn pki() -> Pki {
    let pki = keel_testkit::pki::Pki::new();
    let signer = pki.cert("keel-release").days(30).self_signed();
    Pki {
        cert: signer.cert.clone(),
        signer,
        _pki: pki,
    }
}

/// keel-server on a runtime of its own, driven synchronously: for tests whose devices run the
/// blocking keel-agent code on the test thread.
pub struct BlockingServer {
    pub base: String,
    /// The PostgreSQL database, if the tests run against PostgreSQL (else SQLite in the data dir).
    pub database_url: Option<String>,
    token: String,
    http: Client,
    runtime: tokio::runtime::Runtime,
    _s3: Option<s3::S3Server>,
}

impl BlockingServer {
    /// Starts `config` on the database the test run selected (SQLite in the data dir, or
    /// PostgreSQL with `KEEL_TEST_DATABASE=postgres`).
    pub fn start(mut config: keel_server::Config) -> BlockingServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        config.database_url = test_database_url();
        let database_url = config.database_url.clone();
        let s3 = test_object_store(&mut config);
        let server = runtime.block_on(keel_server::Server::bind(config)).unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let token = server.created_admin_token.clone().unwrap();
        runtime.spawn(server.serve(std::future::pending()));
        BlockingServer {
            base,
            database_url,
            token,
            http: Client::new(),
            runtime,
            _s3: s3,
        }
    }

    /// A management API call with the admin token that must succeed; returns the JSON body.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        raw: Option<Vec<u8>>,
    ) -> Value {
        self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            if let Some(raw) = raw {
                request = request.body(raw);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{method} {path}: {status} {value}");
            value
        })
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body), None)
    }

    /// Runs `future` on the server's runtime (for async keel-server APIs in blocking tests).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The file holding artifact `sha256` (for tests that tamper with it): under
    /// `data_dir/artifacts`, or the S3 server's file of the object with `KEEL_TEST_STORAGE=s3`.
    pub fn artifact_file(&self, data_dir: &std::path::Path, sha256: &str) -> std::path::PathBuf {
        match &self._s3 {
            Some(s3) => s3.object_path("keel", &format!("test/artifacts/{sha256}")),
            None => data_dir.join("artifacts").join(sha256),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None, None)
    }
}
