//! A real S3 server for tests and benchmarks: `s3s-fs` (objects as files under a directory) behind
//! the `s3s` HTTP service, which checks AWS SigV4 signatures (headers and pre-signed URLs) and
//! speaks S3's REST/XML protocol, on a loopback port. It runs on a runtime and thread of its own,
//! so it outlives the test that started it, and `stop` cuts every connection at once, as a
//! crashed or unreachable S3 server would.
//!
//! Also compiled into `examples/s3-server.rs` (the benchmark's and other tests' S3 server).
#![allow(dead_code)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "keel-test-access-key";
pub const SECRET_KEY: &str = "keel-test-secret-key-0123456789abcdef";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub addr: SocketAddr,
    /// Directory holding the buckets (one subdirectory each) and objects (files under it).
    pub root: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// A server on a fresh temporary directory and an ephemeral loopback port.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mut server = S3Server::start_at(&root, SocketAddr::from(([127, 0, 0, 1], 0)));
        server._tempdir = Some(dir);
        server
    }

    /// A server on `root` (existing directory) listening on `addr`.
    pub fn start_at(root: &Path, addr: SocketAddr) -> S3Server {
        let (runtime, addr) = serve(root, addr);
        S3Server {
            endpoint: format!("http://{addr}"),
            addr,
            root: root.to_path_buf(),
            _tempdir: None,
            runtime: Some(runtime),
        }
    }

    /// Creates a bucket (s3s-fs keeps one directory per bucket).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// The file s3s-fs stores `key` of `bucket` in.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Every object key in `bucket` (files under its directory), sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = format!("{prefix}{name}");
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{key}/"), out);
                } else {
                    out.push(key);
                }
            }
        }
        let mut keys = Vec::new();
        walk(&self.root.join(bucket), "", &mut keys);
        keys.sort();
        keys
    }

    /// Points `config` at `bucket` (with `prefix`) on this server, with its credentials.
    pub fn configure(&self, config: &mut keel_server::Config, bucket: &str, prefix: &str) {
        config.object_store_url = Some(format!("s3://{bucket}/{prefix}"));
        config.s3_endpoint = Some(self.endpoint.clone());
        config.s3_region = REGION.into();
        config.s3_access_key_id = Some(ACCESS_KEY.into());
        config.s3_secret_access_key = Some(SECRET_KEY.into());
    }

    /// Stops serving: the listener and every open connection close now.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Serves again on the same address and directory.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The old listener closes asynchronously; retry until the port is free.
            match std::net::TcpListener::bind(self.addr) {
                Ok(probe) => {
                    drop(probe);
                    break;
                }
                Err(err) if Instant::now() < deadline => {
                    let _ = err;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => panic!("rebinding {}: {err}", self.addr),
            }
        }
        let (runtime, _) = serve(&self.root, self.addr);
        self.runtime = Some(runtime);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(root: &Path, addr: SocketAddr) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("s3s-fs")
        .enable_all()
        .build()
        .unwrap();
    let filesystem = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = S3ServiceBuilder::new(filesystem);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    // Bound here (not on the runtime: the caller may be inside another runtime).
    let listener =
        std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("S3 server on {addr}: {e}"));
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let connection = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    (runtime, addr)
}
