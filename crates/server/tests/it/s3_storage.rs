//! Artifacts on S3-compatible object storage, against a real S3 server (s3s-fs behind the s3s
//! SigV4-checking HTTP service, on a loopback port): uploads land under their SHA-256, devices
//! download them streamed (full, Range, resume, HEAD) or through pre-signed redirects, and an S3
//! outage is a 503 that loses nothing.

use crate::common;

use common::s3::S3Server;
use common::{random_bytes, SimDevice, TestServer};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

const BUCKET: &str = "fleet";
const PREFIX: &str = "keel";

async fn server_on(s3: &S3Server, adjust: impl FnOnce(&mut keel_server::Config)) -> TestServer {
    s3.create_bucket(BUCKET);
    TestServer::start_with(|config| {
        s3.configure(config, BUCKET, PREFIX);
        adjust(config);
    })
    .await
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads `bytes` as `filename` into module `module_id`; returns the status and JSON body.
async fn upload(
    server: &TestServer,
    module_id: i64,
    filename: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mgmt = server.mgmt();
    let response = mgmt
        .client
        .post(format!(
            "{}/rest/v1/softwaremodules/{module_id}/artifacts",
            server.base
        ))
        .query(&[("filename", filename)])
        .bearer_auth(mgmt.token.unwrap())
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn module(server: &TestServer, name: &str) -> i64 {
    let module = server
        .mgmt()
        .ok(
            Method::POST,
            "/rest/v1/softwaremodules",
            Some(json!({ "name": name, "version": "1" })),
        )
        .await;
    module["id"].as_i64().unwrap()
}

/// Registers `dev1`, releases `image` as `update.swu` and assigns it; returns the device and the
/// artifact's DDI download URL.
async fn assigned_device(server: &TestServer, image: &[u8]) -> (SimDevice, String) {
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &[]).await;
    let (set_id, module_id) = mgmt
        .release("fw", "1.0", "update.swu", image.to_vec())
        .await;
    mgmt.ok(
        Method::POST,
        "/rest/v1/targets/dev1/assignedDS",
        Some(json!({ "id": set_id })),
    )
    .await;
    let device = SimDevice::new(&server.base, "dev1", &token);
    let download = format!(
        "{}/softwaremodules/{module_id}/artifacts/update.swu",
        device.url()
    );
    (device, download)
}

/// Objects of the bucket under the server's prefix (s3s-fs keeps each as a file).
fn stored_keys(s3: &S3Server) -> Vec<String> {
    s3.keys(BUCKET)
}

#[tokio::test]
async fn uploads_land_under_their_sha256_and_devices_download_full_ranges_and_resumes() {
    let s3 = S3Server::start();
    let server = server_on(&s3, |_| {}).await;
    // 20 MiB: more than two 8 MiB parts, so the upload is a multipart upload.
    let image = random_bytes(20 << 20, 7);
    let sha256 = sha256_hex(&image);
    let (device, download) = assigned_device(&server, &image).await;

    // The artifact is one object named by its SHA-256; no temporary object is left.
    let key = format!("{PREFIX}/artifacts/{sha256}");
    assert_eq!(stored_keys(&s3), vec![key.clone()]);
    assert!(std::fs::read(s3.object_path(BUCKET, &key)).unwrap() == image);
    // Nothing in the data directory's artifact layout.
    assert!(!server.dir.path().join("artifacts").exists());

    // Hashes as computed on upload, in the DDI artifact list.
    let (status, list) = device
        .get_json(download.trim_end_matches("/update.swu"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["hashes"]["sha256"], sha256);
    assert_eq!(
        list[0]["hashes"]["sha1"],
        hex::encode(sha1::Sha1::digest(&image))
    );
    assert_eq!(
        list[0]["hashes"]["md5"],
        hex::encode(md5::Md5::digest(&image))
    );

    // Full download, streamed from S3.
    let response = device.get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        image.len().to_string()
    );
    assert!(response.bytes().await.unwrap() == image);

    // A range inside the object (a ranged GET on S3).
    let response = device
        .get_range(&download, "9000000-9000999")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes 9000000-9000999/{}", image.len())
    );
    assert!(response.bytes().await.unwrap() == image[9_000_000..9_001_000]);

    // Resume: a download cut after 5 MB continues from there with `bytes=N-`.
    let mut response = device.get(&download).await.unwrap();
    let mut partial = Vec::new();
    while partial.len() < 5_000_000 {
        partial.extend_from_slice(&response.chunk().await.unwrap().unwrap());
    }
    drop(response);
    let response = device
        .get_range(&download, &format!("{}-", partial.len()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    partial.extend_from_slice(&response.bytes().await.unwrap());
    assert!(partial == image);

    // HEAD: the headers of a download, no body.
    let response = device
        .client
        .head(&download)
        .header(header::AUTHORIZATION, &device.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        image.len().to_string()
    );
    assert_eq!(response.headers()[header::ACCEPT_RANGES], "bytes");

    // Out of range: 416 from keel-server, as with local files.
    let response = device
        .get_range(&download, &format!("{}-", image.len()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // No device token: refused before the storage is asked.
    let response = reqwest::get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn uploads_are_deduplicated_limited_and_leave_nothing_behind() {
    let s3 = S3Server::start();
    // 10 MiB limit: a 12 MiB body gets past the first 8 MiB part before it is refused.
    let server = server_on(&s3, |c| c.max_artifact_bytes = 10 << 20).await;
    let id = module(&server, "fw").await;

    let image = random_bytes(3 << 20, 3);
    let (status, first) = upload(&server, id, "a.swu", image.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = upload(&server, id, "b.swu", image.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(first["sha256"], second["sha256"]);
    let key = format!("{PREFIX}/artifacts/{}", sha256_hex(&image));
    assert_eq!(stored_keys(&s3), vec![key.clone()]);

    // Too large: 413 after a multipart upload had begun; it is aborted, nothing is stored.
    let (status, error) = upload(&server, id, "big.swu", random_bytes(12 << 20, 4)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(stored_keys(&s3), vec![key.clone()]);
    let pending_parts: Vec<_> = std::fs::read_dir(&s3.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".upload_id-"))
        .collect();
    assert!(pending_parts.is_empty(), "parts left: {pending_parts:?}");

    // Empty: 400, nothing stored.
    let (status, _) = upload(&server, id, "empty.swu", Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(stored_keys(&s3), vec![key]);
    server.stop().await;
}

#[tokio::test]
async fn artifacts_too_large_for_one_copy_are_streamed_into_place() {
    let s3 = S3Server::start();
    let server = server_on(&s3, |c| c.s3_max_copy_bytes = 1 << 20).await;
    let image = random_bytes(9 << 20, 9);
    let (device, download) = assigned_device(&server, &image).await;
    let key = format!("{PREFIX}/artifacts/{}", sha256_hex(&image));
    assert_eq!(stored_keys(&s3), vec![key.clone()]);
    assert!(std::fs::read(s3.object_path(BUCKET, &key)).unwrap() == image);
    let response = device.get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == image);
    server.stop().await;
}

#[tokio::test]
async fn presigned_downloads_redirect_authenticated_devices_only() {
    let s3 = S3Server::start();
    let server = server_on(&s3, |c| {
        c.s3_presign_downloads = true;
        c.s3_presign_expiry_secs = 600;
    })
    .await;
    let image = random_bytes(1 << 20, 5);
    let (device, download) = assigned_device(&server, &image).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // An authenticated device gets a 302 to a SigV4 pre-signed URL of the object.
    let response = no_redirects
        .get(&download)
        .header(header::AUTHORIZATION, &device.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let object_url = format!(
        "{}/{BUCKET}/{PREFIX}/artifacts/{}",
        s3.endpoint,
        sha256_hex(&image)
    );
    assert!(
        location.starts_with(&format!("{object_url}?")),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires=600"), "{location}");

    // The URL alone (no token) fetches the object from S3, whole or in ranges.
    let response = reqwest::get(&location).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == image);
    let response = no_redirects
        .get(&location)
        .header(header::RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert!(response.bytes().await.unwrap() == image[1000..2000]);

    // A device whose HTTP client follows redirects downloads transparently (its token is not
    // sent on to S3, another origin), also resuming with Range.
    let response = device.get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == image);
    let response = device.get_range(&download, "524288-").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert!(response.bytes().await.unwrap() == image[524_288..]);
    // keel-agent's downloader (ureq, which drops `Authorization` on redirects) likewise.
    let (url, auth) = (download.clone(), device.auth.clone());
    let fetched = tokio::task::spawn_blocking(move || {
        let mut reader = keel_agent::source::HttpReader::open(
            keel_agent::source::http_agent(&Default::default()).unwrap(),
            &url,
            vec![("Authorization".into(), auth)],
            keel_agent::source::ResumePolicy::default(),
        )
        .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
        bytes
    })
    .await
    .unwrap();
    assert!(fetched == image);

    // S3 checks the signature: the URL changed to another object, or unsigned, is refused.
    let other = location.replace(&sha256_hex(&image), &sha256_hex(b"other"));
    assert_eq!(
        reqwest::get(&other).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        reqwest::get(&object_url).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Without a device token keel-server refuses and reveals no URL.
    let response = no_redirects.get(&download).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(header::LOCATION).is_none());
    // Another device that is not assigned the module does not get one either.
    let other_token = server.mgmt().device("dev2", &[]).await;
    let response = no_redirects
        .get(download.replace("/dev1/", "/dev2/"))
        .header(header::AUTHORIZATION, format!("TargetToken {other_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(header::LOCATION).is_none());

    // HEAD is answered by keel-server (a pre-signed GET URL does not allow HEAD).
    let response = no_redirects
        .head(&download)
        .header(header::AUTHORIZATION, &device.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        image.len().to_string()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_s3_outage_is_a_503_and_loses_nothing() {
    let mut s3 = S3Server::start();
    let server = server_on(&s3, |_| {}).await;
    let image = random_bytes(2 << 20, 11);
    let (device, download) = assigned_device(&server, &image).await;
    let module_id: i64 = download
        .split("/softwaremodules/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();

    s3.stop();
    // Downloads: 503 with Retry-After, a message that says what is down.
    let response = device.get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "10");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unavailable");
    assert_eq!(
        error["message"],
        "artifact storage unavailable, retry later"
    );
    // Uploads: 503, and no artifact row is written.
    let second = random_bytes(1 << 20, 12);
    let (status, error) = upload(&server, module_id, "second.swu", second.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    let artifacts = server
        .mgmt()
        .ok(
            Method::GET,
            &format!("/rest/v1/softwaremodules/{module_id}/artifacts"),
            None,
        )
        .await;
    assert_eq!(artifacts["total"], 1, "{artifacts}");
    // The management API and device polls keep working (they do not touch the storage).
    assert!(device.poll().await.is_ok());

    // S3 back: the earlier artifact is intact, the failed upload can be repeated.
    s3.restart();
    let response = device.get(&download).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == image);
    let (status, created) = upload(&server, module_id, "second.swu", second.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["sha256"], sha256_hex(&second));
    let mut expected = vec![
        format!("{PREFIX}/artifacts/{}", sha256_hex(&image)),
        format!("{PREFIX}/artifacts/{}", sha256_hex(&second)),
    ];
    expected.sort();
    assert_eq!(stored_keys(&s3), expected);
    server.stop().await;

    // Starting keel-server while S3 is down fails with an error naming the store.
    s3.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut config = keel_server::Config::for_data_dir(dir.path());
    config.database_url = common::test_database_url();
    s3.configure(&mut config, BUCKET, PREFIX);
    let err = match keel_server::Server::bind(config).await {
        Ok(_) => panic!("started without its object storage"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains(&format!("object store s3://{BUCKET}/{PREFIX}")),
        "{err}"
    );
}

/// Named objects (for state every replica must share): the same contract on S3 and on files.
#[tokio::test]
async fn named_objects_behave_alike_on_s3_and_local_files() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let mut s3_config = keel_server::Config::for_data_dir(dir.path().join("s3"));
    s3.configure(&mut s3_config, BUCKET, PREFIX);
    let local_dir = dir.path().join("local");
    let stores = [
        keel_server::artifacts::ArtifactStore::open(&s3_config)
            .await
            .unwrap(),
        keel_server::artifacts::ArtifactStore::open(&keel_server::Config::for_data_dir(&local_dir))
            .await
            .unwrap(),
    ];
    for store in &stores {
        let kind = store.kind();
        assert_eq!(
            store.get_object("tuf/default/root.json").await.unwrap(),
            None
        );
        store
            .put_object("tuf/default/root.json", "v1".into())
            .await
            .unwrap();
        store
            .put_object("tuf/default/root.json", "v2".into())
            .await
            .unwrap();
        store
            .put_object("tuf/default/targets/a.json", "a".into())
            .await
            .unwrap();
        store
            .put_object("tuf/other/root.json", "o".into())
            .await
            .unwrap();
        assert_eq!(
            store.get_object("tuf/default/root.json").await.unwrap(),
            Some("v2".into()),
            "{kind}"
        );
        assert_eq!(
            store.list_objects("tuf/default").await.unwrap(),
            vec!["tuf/default/root.json", "tuf/default/targets/a.json"],
            "{kind}"
        );
        store.delete_object("tuf/default/root.json").await.unwrap();
        store.delete_object("tuf/default/root.json").await.unwrap();
        assert_eq!(
            store.list_objects("tuf/default").await.unwrap(),
            vec!["tuf/default/targets/a.json"],
            "{kind}"
        );
        // Keys cannot reach the artifact layout or the data directory's own files.
        for bad in [
            "keel.db",
            "artifacts/x",
            "tmp/x",
            "tuf/../keel.db",
            "tuf//x",
            "/tuf/x",
        ] {
            assert!(
                store.put_object(bad, "x".into()).await.is_err(),
                "{kind}: {bad}"
            );
        }
    }
    assert_eq!(
        std::fs::read(s3.object_path(BUCKET, "keel/tuf/default/targets/a.json")).unwrap(),
        b"a"
    );
    assert_eq!(
        std::fs::read(local_dir.join("tuf/default/targets/a.json")).unwrap(),
        b"a"
    );
}

/// An `https://` endpoint goes through rustls with the ring provider keel-server installs: with
/// nothing listening, the start fails with a connection error naming the store (no TLS set-up
/// panic), and a plain-HTTP endpoint that is not loopback is refused unless allowed.
#[tokio::test]
async fn endpoints_https_and_plain_http_rules() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = keel_server::Config::for_data_dir(dir.path());
    config.object_store_url = Some("s3://bucket".into());
    config.s3_endpoint = Some(format!("https://{closed}"));
    config.s3_access_key_id = Some("id".into());
    config.s3_secret_access_key = Some("secret".into());
    let err = match keel_server::artifacts::ArtifactStore::open(&config).await {
        Ok(_) => panic!("opened a store nobody serves"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("object store s3://bucket"), "{err}");
    assert!(!err.contains("panic"), "{err}");

    config.s3_endpoint = Some("http://s3.example.invalid:9000".into());
    let err = match keel_server::artifacts::ArtifactStore::open(&config).await {
        Ok(_) => panic!("plain HTTP to a non-loopback endpoint was allowed"),
        Err(err) => format!("{err:#}"),
    };
    // reqwest refuses to build the plain-HTTP request (https only): nothing is sent.
    assert!(err.contains("builder error"), "{err}");
}

/// Stores object `key` as s3s-fs would (a file under the bucket's directory) with `bytes`, last
/// modified `age` ago (s3s-fs reports a file's mtime as the object's Last-Modified).
fn put_aged_object(s3: &S3Server, key: &str, bytes: &[u8], age: std::time::Duration) {
    let path = s3.object_path(BUCKET, key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    set_age(s3, key, age);
}

/// Sets object `key`'s Last-Modified `age` back.
fn set_age(s3: &S3Server, key: &str, age: std::time::Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(s3.object_path(BUCKET, key))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

/// A start deletes what aborted uploads left under `tmp/` once it is more than a day old (other
/// replicas may be uploading right now), and nothing else: not a younger upload, not artifacts,
/// however old.
#[tokio::test]
async fn a_start_deletes_stale_uploads_only() {
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    let s3 = S3Server::start();
    let server = server_on(&s3, |_| {}).await;
    let id = module(&server, "fw").await;
    let image = random_bytes(64 << 10, 21);
    let (status, body) = upload(&server, id, "a.swu", image.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.stop().await;

    let artifact = format!("{PREFIX}/artifacts/{}", sha256_hex(&image));
    set_age(&s3, &artifact, 400 * 24 * HOUR);
    let stale = format!("{PREFIX}/tmp/upload-crashed-two-days-ago");
    let stale_by_minutes = format!("{PREFIX}/tmp/upload-crashed-a-day-ago");
    let fresh = format!("{PREFIX}/tmp/upload-in-progress-elsewhere");
    put_aged_object(&s3, &stale, &random_bytes(4096, 22), 48 * HOUR);
    put_aged_object(
        &s3,
        &stale_by_minutes,
        b"partial",
        24 * HOUR + std::time::Duration::from_secs(600),
    );
    put_aged_object(&s3, &fresh, b"partial", 23 * HOUR);
    let mut before = vec![
        artifact.clone(),
        stale.clone(),
        stale_by_minutes.clone(),
        fresh.clone(),
    ];
    before.sort();
    assert_eq!(stored_keys(&s3), before);

    // Another replica (a fresh data directory and database) starts on the same bucket.
    let server = server_on(&s3, |_| {}).await;
    let mut after = vec![artifact.clone(), fresh.clone()];
    after.sort();
    assert_eq!(
        stored_keys(&s3),
        after,
        "stale uploads are gone, the rest is kept"
    );
    assert!(std::fs::read(s3.object_path(BUCKET, &artifact)).unwrap() == image);
    assert_eq!(
        std::fs::read(s3.object_path(BUCKET, &fresh)).unwrap(),
        b"partial"
    );
    server.stop().await;
}
