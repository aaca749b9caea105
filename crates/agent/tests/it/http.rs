//! Install over HTTP from a server that breaks the connection every N bytes: the reader
//! resumes with Range requests and the install completes; a server that answers a resume
//! with the whole resource again fails the install, which is then never activated.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{image, FileDevice};
use keel_agent::source::{http_agent, HttpReader, ResumePolicy};
use keel_agent::{Agent, Config, InstallOptions, SlotId};

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
}

/// Serves `body`; each response carries at most `break_after` body bytes before the
/// connection is dropped. `honour_ranges = false` answers every request with 200 and the
/// whole body.
fn serve(body: Vec<u8>, break_after: usize, honour_ranges: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bundle.swu", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = handle(stream, &body, break_after, honour_ranges);
        }
    });
    Server { url, requests }
}

fn handle(
    mut stream: TcpStream,
    body: &[u8],
    break_after: usize,
    honour_ranges: bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut start = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(range) = lower.strip_prefix("range: bytes=") {
            start = range.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    if !honour_ranges {
        start = 0;
    }
    let total = body.len();
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
            total - start,
            total - 1
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n")
    };
    stream.write_all(head.as_bytes())?;
    let end = (start + break_after).min(total);
    stream.write_all(&body[start..end])?;
    stream.flush()?;
    // Drop the connection mid-body (unless everything was sent).
    stream.shutdown(std::net::Shutdown::Both)
}

fn policy() -> ResumePolicy {
    ResumePolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

#[test]
fn broken_connections_are_resumed() {
    let device = FileDevice::new();
    let rootfs = image(7, 220_000);
    let bundle = device.bundle("2.0", &rootfs);
    let server = serve(bundle.clone(), 64 * 1024, true);

    let config = Config::load(&device.config_path).unwrap();
    let mut agent = Agent::open_os(config).unwrap();
    let mut reader = HttpReader::open(
        http_agent(&Default::default()).unwrap(),
        &server.url,
        Vec::new(),
        policy(),
    )
    .unwrap();
    let report = agent
        .install(&mut reader, InstallOptions::default())
        .unwrap();
    assert_eq!(report.target, SlotId::B);
    assert!(reader.resumes() >= 3, "resumes: {}", reader.resumes());
    assert!(
        reader.offset() + 1024 > bundle.len() as u64,
        "stopped at {}",
        reader.offset()
    );
    assert!(server.requests.load(Ordering::SeqCst) >= 4);
    let slot_b = std::fs::read(device.path("rootfs-b.img")).unwrap();
    assert_eq!(&slot_b[..rootfs.len()], &rootfs[..]);
    assert!(device.reboot(2).contains("keel.slot=B"));
}

#[test]
fn resume_without_range_support_fails_and_is_not_activated() {
    let device = FileDevice::new();
    let bundle = device.bundle("2.0", &image(8, 220_000));
    let server = serve(bundle, 64 * 1024, false);

    let config = Config::load(&device.config_path).unwrap();
    let mut agent = Agent::open_os(config).unwrap();
    let reader = HttpReader::open(
        http_agent(&Default::default()).unwrap(),
        &server.url,
        Vec::new(),
        policy(),
    )
    .unwrap();
    let err = agent
        .install(reader, InstallOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("resum"), "{err}");
    let status = agent.status().unwrap();
    assert_eq!(
        status.last_result.unwrap().outcome,
        keel_agent::state::Outcome::Failed
    );
    assert!(device.reboot(2).contains("keel.slot=A"));
}
