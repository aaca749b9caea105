//! `keel-agent install` of a bundle with a `keel-chunked` image, as the binary on real files:
//! the pack next to the `.swu` (offline / USB), the pack over HTTP with `--pack-url` (single
//! Range requests; the server counts what it sends), and a pack server without range support
//! (refused, never activated).

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{image, FileDevice, SLOT_SIZE};
use keel_delta::chunk::{ChunkIndex, ChunkParams};

const PARAMS: ChunkParams = ChunkParams {
    min: 1024,
    avg: 4096,
    max: 16384,
};

/// Factory image of slot A (written into the slot file) and the next version.
fn versions(dev: &FileDevice) -> (Vec<u8>, Vec<u8>) {
    let v1 = image(3, 200 * 1024);
    let mut slot = v1.clone();
    slot.resize(SLOT_SIZE, 0);
    std::fs::write(dev.path("rootfs-a.img"), &slot).unwrap();
    let mut v2 = v1.clone();
    v2[50_000..52_000].copy_from_slice(&image(4, 2000));
    v2.extend_from_slice(&image(5, 8000));
    (v1, v2)
}

/// The signed bundle (chunk index of `new`) and the pack.
fn release(dev: &FileDevice, new: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut pack = Vec::new();
    let index = ChunkIndex::build(new, PARAMS, 3, |_, c| {
        pack.extend_from_slice(c);
        Ok(())
    })
    .unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0\"\n[[software.images]]\nfilename = \"rootfs.kidx\"\ndevice = \"rootfs\"\n\
         type = \"keel-chunked\"\n[software.images.properties]\ntarget-sha256 = \"{}\"\n\
         target-size = \"{}\"\npack = \"rootfs.kpack\"\n",
        keel_delta::hex(&index.image_sha256),
        index.image_size
    );
    let bundle = keel_testkit::bundle::signed_bundle(
        &dev.signer,
        &manifest,
        &[("rootfs.kidx", &index.to_bytes())],
    );
    (bundle, pack)
}

fn install(dev: &FileDevice, args: &[&str]) -> (bool, String) {
    let out = dev.agent_cmd().arg("install").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pack_next_to_the_bundle_file() {
    let dev = FileDevice::new();
    let (v1, v2) = versions(&dev);
    let (bundle, pack) = release(&dev, &v2);
    let usb = dev.path("usb");
    std::fs::create_dir_all(&usb).unwrap();
    std::fs::write(usb.join("update.swu"), &bundle).unwrap();
    std::fs::write(usb.join("rootfs.kpack"), &pack).unwrap();
    let (ok, log) = install(&dev, &[usb.join("update.swu").to_str().unwrap()]);
    assert!(ok, "{log}");
    assert!(log.contains("chunked images"), "{log}");
    let slot_b = std::fs::read(dev.path("rootfs-b.img")).unwrap();
    assert_eq!(&slot_b[..v2.len()], &v2[..]);
    assert_eq!(
        &std::fs::read(dev.path("rootfs-a.img")).unwrap()[..v1.len()],
        &v1[..]
    );
    assert_eq!(dev.status_json()["state"], "installed");
    assert!(dev.reboot(2).contains("keel.slot=B"));
}

struct PackServer {
    url: String,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

/// Serves `body` answering single `Range: bytes=a-b` requests with 206 (or, without range
/// support, always 200 and the whole body); counts body bytes sent.
fn serve(body: Vec<u8>, ranges: bool) -> PackServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/packs/rootfs.kpack",
        listener.local_addr().unwrap()
    );
    let sent = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (s, r) = (sent.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            r.fetch_add(1, Ordering::SeqCst);
            let _ = answer(stream, &body, ranges, &s);
        }
    });
    PackServer {
        url,
        sent,
        requests,
    }
}

fn answer(
    mut stream: TcpStream,
    body: &[u8],
    ranges: bool,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some(spec) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = spec.trim().split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        }
    }
    let total = body.len();
    let (head, data) = match range.filter(|_| ranges) {
        Some((a, b)) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{total}\r\nConnection: close\r\n\r\n",
                b - a + 1
            ),
            &body[a..=b],
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"),
            body,
        ),
    };
    stream.write_all(head.as_bytes())?;
    stream.write_all(data)?;
    sent.fetch_add(data.len() as u64, Ordering::SeqCst);
    stream.flush()
}

#[test]
fn pack_over_http_ranges_fetches_only_missing_chunks() {
    let dev = FileDevice::new();
    let (_, v2) = versions(&dev);
    let (bundle, pack) = release(&dev, &v2);
    let server = serve(pack.clone(), true);
    std::fs::write(dev.path("update.swu"), &bundle).unwrap();
    let (ok, log) = install(
        &dev,
        &[
            dev.path("update.swu").to_str().unwrap(),
            "--pack-url",
            &server.url,
        ],
    );
    assert!(ok, "{log}");
    let slot_b = std::fs::read(dev.path("rootfs-b.img")).unwrap();
    assert_eq!(&slot_b[..v2.len()], &v2[..]);
    let sent = server.sent.load(Ordering::SeqCst);
    eprintln!(
        "pack over HTTP: {sent} bytes in {} requests for a {}-byte image (pack {} bytes)",
        server.requests.load(Ordering::SeqCst),
        v2.len(),
        pack.len()
    );
    assert!(sent > 0 && sent * 5 < v2.len() as u64, "sent {sent}");
    // The agent's own count agrees with the server's.
    assert!(log.contains(&format!("({sent} bytes in")), "{log}");
}

#[test]
fn pack_server_without_range_support_is_refused() {
    let dev = FileDevice::new();
    let (v1, v2) = versions(&dev);
    let (bundle, pack) = release(&dev, &v2);
    let server = serve(pack, false);
    std::fs::write(dev.path("update.swu"), &bundle).unwrap();
    let (ok, log) = install(
        &dev,
        &[
            dev.path("update.swu").to_str().unwrap(),
            "--pack-url",
            &server.url,
        ],
    );
    assert!(!ok);
    assert!(log.contains("range"), "{log}");
    assert_eq!(dev.status_json()["last_result"]["outcome"], "failed");
    assert!(dev.reboot(2).contains("keel.slot=A"));
    assert_eq!(
        &std::fs::read(dev.path("rootfs-a.img")).unwrap()[..v1.len()],
        &v1[..]
    );
}
