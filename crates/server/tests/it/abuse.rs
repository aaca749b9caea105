//! Abuse resistance (docs/security.md): failed logins and bad tokens back off per account and per
//! client address with `429` + `Retry-After`; password hashing is bounded; header and body read
//! timeouts; the connection limit; the early `413` from a declared `Content-Length`.

use crate::common;

use common::browser::Browser;
use common::{SimDevice, TestServer};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// Creates dashboard accounts through the admin's session.
async fn create_users(server: &TestServer, users: &[(&str, &str)]) {
    let mut admin = Browser::new(&server.base);
    let page = admin
        .login_with("default", &[("token", &server.admin)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let csrf = admin.get("/ui/users").await.csrf();
    for (user, password) in users {
        let created = admin
            .post_form(
                "/ui/users",
                &[
                    ("csrf", &csrf),
                    ("user", user),
                    ("password", password),
                    ("role", "operator"),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    }
}

#[tokio::test]
async fn failed_password_logins_back_off_per_account_and_a_success_resets() {
    let server = TestServer::start().await;
    let good = "correct horse battery";
    create_users(&server, &[("alice", good), ("bob", good)]).await;
    let mut browser = Browser::new(&server.base);

    // 5 failures are free; the 6th blocks alice for 1 s, the 7th is refused at once, even with
    // the right password: nothing is checked while the account is blocked.
    for attempt in 1..=6 {
        let page = browser
            .login_with("default", &[("user", "alice"), ("password", "guess")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(page.body.contains("Wrong user or password"));
    }
    let asked = std::time::Instant::now();
    let refused = browser
        .login_with("default", &[("user", "alice"), ("password", good)])
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // The refusal is held until the block ends (1 s here), so a guesser gets one answer a
    // second per connection.
    let held = asked.elapsed();
    assert!(
        held >= Duration::from_millis(700),
        "answered after {held:?}"
    );
    assert!(
        refused.body.contains("Too many failed logins"),
        "{}",
        refused.body
    );
    let wait = refused.retry_after.expect("Retry-After");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // Per account: bob, from the same address, is not affected.
    let bob = Browser::new(&server.base)
        .login_with("default", &[("user", "bob"), ("password", good)])
        .await;
    assert_eq!(bob.status, StatusCode::SEE_OTHER, "{}", bob.body);

    // After the wait the right password works and clears alice's failures: 5 more are free.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let ok = browser
        .login_with("default", &[("user", "alice"), ("password", good)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    for attempt in 1..=5 {
        let page = Browser::new(&server.base)
            .login_with("default", &[("user", "alice"), ("password", "guess")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_bearer_tokens_back_off_per_address_without_touching_devices() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev-1", &[]).await;
    let device = SimDevice::new(&server.base, "dev-1", &token);
    let attacker = mgmt.with_token(Some("not-a-token"));

    // 50 failures per address are free, the 51st blocks the address for 1 s.
    for attempt in 1..=51 {
        let (status, _) = attacker.get("/rest/v1/targets").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // While a refusal is held back, a device at the same address is answered at once.
    let asked = std::time::Instant::now();
    let refused = mgmt
        .client
        .get(format!("{}/rest/v1/targets", server.base))
        .bearer_auth(&server.admin)
        .send();
    let poll = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let polled = std::time::Instant::now();
        device.poll().await.unwrap();
        polled.elapsed()
    };
    let (response, poll_took) = tokio::join!(refused, poll);
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let held = asked.elapsed();
    assert!(
        held >= Duration::from_millis(700),
        "answered after {held:?}"
    );
    assert!(
        poll_took < Duration::from_millis(500),
        "device poll took {poll_took:?}"
    );
    let wait = retry_after(response.headers()).expect("Retry-After");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("too many failed authentication attempts"),
        "{body}"
    );

    // Devices at the same address are counted apart (generous limits for NAT'd fleets).
    device.poll().await.unwrap();

    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let (status, _) = mgmt.get("/rest/v1/targets").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn device_token_failures_back_off_per_device_and_a_success_resets() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev-1", &[]).await;
    let other_token = mgmt.device("dev-2", &[]).await;
    let device = SimDevice::new(&server.base, "dev-1", &token);
    let impostor = SimDevice::new(&server.base, "dev-1", "wrong-token");
    let other = SimDevice::new(&server.base, "dev-2", &other_token);

    for attempt in 1..=11 {
        let (status, _) = impostor.get_json(&impostor.url()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let response = device.get(&device.url()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(response.headers()).expect("Retry-After");
    other.poll().await.unwrap();

    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    device.poll().await.unwrap();
    // The success cleared dev-1's failures.
    for attempt in 1..=10 {
        let (status, _) = impostor.get_json(&impostor.url()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    device.poll().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn password_hashing_beyond_the_queue_is_refused_quickly() {
    // Throttling off, so only the hashing bound decides.
    let server = TestServer::start_with(|config| config.no_auth_throttle = true).await;
    let base = server.base.clone();
    let started = Instant::now();
    let logins: Vec<_> = (0..64)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                Browser::new(&base)
                    .login_with(
                        "default",
                        &[("user", &format!("nobody-{i}")), ("password", "guess")],
                    )
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    for login in logins {
        let page = login.await.unwrap();
        match page.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(page.retry_after, Some(1));
                assert!(page.body.contains("busy"), "{}", page.body);
            }
            other => panic!("unexpected {other}: {}", page.body),
        }
    }
    // At most `slots` hash and `4 × slots` wait at any moment: 64 logins at once overflow it.
    let slots = keel_server::throttle::hash_concurrency();
    assert!(busy > 0, "none of 64 refused with {slots} slots");
    assert!(busy < 64, "some logins were checked");
    assert!(started.elapsed() < Duration::from_secs(30));
    server.stop().await;
}

fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads until the end of a response head, EOF or `limit`; returns the text read and whether
/// the connection was closed.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&bytes).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&bytes).into_owned(), true),
            Ok(Ok(n)) => {
                bytes.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&bytes);
                if let Some(end) = text.find("\r\n\r\n") {
                    // The body, if announced, follows; read what is there.
                    let head = text[..end].to_string();
                    return (format!("{head}\r\n\r\n{}", &text[end + 4..]), false);
                }
            }
        }
    }
}

/// Waits until the server closes `stream`; returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn partial_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|config| config.header_read_timeout_ms = 500).await;
    let mut slow = TcpStream::connect(address(&server)).await.unwrap();
    slow.write_all(b"GET /rest/v1/openapi.json HTTP/1.1\r\nHost: keel\r\nX-Slow: ")
        .await
        .unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("partial headers closed");
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");

    // A keep-alive connection is served, then closed once idle for the same time.
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /rest/v1/openapi.json HTTP/1.1\r\nHost: keel\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut idle, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(closed_within(&mut idle, Duration::from_secs(5))
        .await
        .is_some());
    server.stop().await;
}

async fn module(server: &TestServer) -> i64 {
    let value = server
        .mgmt()
        .ok(
            reqwest::Method::POST,
            "/rest/v1/softwaremodules",
            Some(json!({ "name": "app", "version": "1" })),
        )
        .await;
    value["id"].as_i64().unwrap()
}

fn tmp_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.dir.path().join("tmp"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_stalled_upload_is_dropped_and_its_temporary_file_removed() {
    let server = TestServer::start_with(|config| config.body_read_timeout_ms = 700).await;
    let id = module(&server).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let upload_head = format!(
        "POST /rest/v1/softwaremodules/{id}/artifacts?filename=app.bin HTTP/1.1\r\nHost: keel\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 102400\r\n\r\n",
        server.admin
    );
    stream.write_all(upload_head.as_bytes()).await.unwrap();
    stream.write_all(&[7u8; 1024]).await.unwrap();
    let local = server.s3.is_none();
    if local {
        // The upload is being written to a temporary file...
        let deadline = Instant::now() + Duration::from_secs(5);
        while tmp_files(&server) == 0 {
            assert!(Instant::now() < deadline, "no temporary upload file");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // ... until the body stalls for longer than the timeout: refused, closed, file removed.
    let (head, _) = read_head(&mut stream, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("reading upload body"), "{head}");
    assert!(closed_within(&mut stream, Duration::from_secs(5))
        .await
        .is_some());
    if local {
        assert_eq!(tmp_files(&server), 0);
    }

    // A client that goes away mid-upload leaves no file either.
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    stream.write_all(upload_head.as_bytes()).await.unwrap();
    stream.write_all(&[7u8; 1024]).await.unwrap();
    if local {
        let deadline = Instant::now() + Duration::from_secs(5);
        while tmp_files(&server) == 0 {
            assert!(Instant::now() < deadline, "no temporary upload file");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while local && tmp_files(&server) > 0 {
        assert!(
            Instant::now() < deadline,
            "temporary file left by a dropped upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, artifacts) = server
        .mgmt()
        .get(&format!("/rest/v1/softwaremodules/{id}/artifacts"))
        .await;
    assert!(!artifacts.to_string().contains("app.bin"), "{artifacts}");
    server.stop().await;
}

#[tokio::test]
async fn a_declared_length_above_the_limit_is_refused_before_the_body() {
    let server = TestServer::start_with(|config| config.max_artifact_bytes = 50_000).await;
    let id = module(&server).await;

    // Management API: the 413 comes back while no body byte was sent.
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let request = format!(
        "POST /rest/v1/softwaremodules/{id}/artifacts?filename=big.bin HTTP/1.1\r\nHost: keel\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100000\r\n\r\n",
        server.admin
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (response, _) = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("--max-artifact-bytes"), "{response}");

    // The dashboard's upload route too.
    let mut admin = Browser::new(&server.base);
    admin
        .login_with("default", &[("token", &server.admin)])
        .await;
    let csrf = admin.get("/ui/software").await.csrf();
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let request = format!(
        "POST /ui/software/modules/{id}/artifacts?filename=big.bin HTTP/1.1\r\nHost: keel\r\n\
         Cookie: {}\r\nX-CSRF-Token: {csrf}\r\nContent-Length: 100000\r\n\r\n",
        admin.cookie_header()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (response, _) = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // Below the limit the upload goes through.
    let (status, _) = server
        .mgmt()
        .client
        .post(format!(
            "{}/rest/v1/softwaremodules/{id}/artifacts?filename=ok.bin",
            server.base
        ))
        .bearer_auth(&server.admin)
        .body(vec![1u8; 40_000])
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    server.stop().await;
}

async fn request_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /rest/v1/openapi.json HTTP/1.1\r\nHost: keel\r\n\r\n")
        .await
        .unwrap();
    read_head(stream, Duration::from_secs(5)).await.0
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_until_one_closes() {
    let server = TestServer::start_with(|config| config.max_connections = 2).await;
    let mut first = TcpStream::connect(address(&server)).await.unwrap();
    let mut second = TcpStream::connect(address(&server)).await.unwrap();
    assert!(request_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(request_on(&mut second).await.starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(address(&server)).await.unwrap();
    let refused = request_on(&mut third).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"));
    assert!(refused.contains("too many open connections"), "{refused}");

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = TcpStream::connect(address(&server)).await.unwrap();
        let head = request_on(&mut next).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed: {head}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
    server.stop().await;
}
