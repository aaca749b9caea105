//! A static HTTP file server for a directory: `python3 -m http.server` on 127.0.0.1.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `python3 -m http.server` on a free 127.0.0.1 port serving a directory; killed on drop.
pub struct HttpServer {
    child: Child,
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
}

impl HttpServer {
    /// Serves `dir`; returns once the port accepts connections (fails the test after 20 s).
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed (scripts/setup-debian.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("http.server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
