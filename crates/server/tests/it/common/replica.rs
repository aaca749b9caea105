//! A `keel-server` process (a replica), started from the test binary's build with its own data
//! directory, for tests of several replicas on one database (docs/scale-out.md, "Replicas").

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `keel-server` process; killed when dropped.
pub struct Replica {
    pub child: Child,
    pub base: String,
    /// The admin token, written to its data directory only by the first start on a database.
    pub admin_token: Option<String>,
}

impl Replica {
    /// Starts `keel-server` on `database_url` with `data_dir` of its own; artifacts in the S3
    /// bucket `keel` (prefix `replicas`) of `s3` if given, else in `data_dir`.
    pub fn start(
        data_dir: &std::path::Path,
        database_url: &str,
        s3: Option<&super::s3::S3Server>,
    ) -> Replica {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel-server"));
        command.args(["--data-dir"]).arg(data_dir);
        if let Some(s3) = s3 {
            command
                .args(["--object-store-url", "s3://keel/replicas", "--s3-endpoint"])
                .arg(&s3.endpoint)
                .env("AWS_REGION", super::s3::REGION)
                .env("AWS_ACCESS_KEY_ID", super::s3::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", super::s3::SECRET_KEY);
        }
        let mut child = command
            .args([
                "--database-url",
                database_url,
                "--listen",
                "127.0.0.1:0",
                "--create-default-tenant",
                "--poll-interval",
                "00:00:05",
                "--scheduler-interval-ms",
                "200",
                "--poll-flush-interval-ms",
                "1000",
            ])
            .env("RUST_LOG", "warn,keel_server::scheduler=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("keel-server binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin_token = None;
        let base = loop {
            let line = lines
                .next()
                .expect("keel-server exited before listening")
                .unwrap();
            if line.starts_with("created the cross-tenant admin token: ") {
                let file = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
                admin_token = Some(file.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("keel-server listening on ") {
                break format!("http://{addr}");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Replica {
            child,
            base,
            admin_token,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
