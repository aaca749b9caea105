//! Management API behaviour beyond the happy path: streamed uploads (limits, cut-offs, dedup),
//! validation of rollouts, tenants and the X-Keel-Tenant header.

mod common;

use common::{random_bytes, SimDevice, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn uploads_are_streamed_hashed_limited_and_deduplicated() {
    let server = TestServer::start_with(|c| c.max_artifact_bytes = 100_000).await;
    let mgmt = server.mgmt();
    let module = mgmt
        .ok(
            Method::POST,
            "/rest/v1/softwaremodules",
            Some(json!({ "name": "fw", "version": "1" })),
        )
        .await;
    let id = module["id"].as_i64().unwrap();
    let upload = |name: &str, body: Vec<u8>| {
        let mgmt = mgmt.clone();
        let url = format!(
            "{}/rest/v1/softwaremodules/{id}/artifacts?filename={name}",
            mgmt.base
        );
        async move {
            let response = mgmt
                .client
                .post(url)
                .bearer_auth(mgmt.token.unwrap())
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    // Over the limit: 413, and neither a file nor a temp file is left.
    let (status, error) = upload("big.swu", random_bytes(150_000, 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["error"], "payload_too_large");
    assert!(files_in(&server.dir.path().join("artifacts")).is_empty());
    assert!(files_in(&server.dir.path().join("tmp")).is_empty());
    // An upload whose connection dies half-way: nothing stored either.
    {
        use tokio::io::AsyncWriteExt;
        let address = server.base.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /rest/v1/softwaremodules/{id}/artifacts?filename=cut.swu HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 90000\r\n\r\n",
            server.admin
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&random_bytes(40_000, 2)).await.unwrap();
        drop(stream);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(files_in(&server.dir.path().join("artifacts")).is_empty());
    assert!(files_in(&server.dir.path().join("tmp")).is_empty());
    assert!(mgmt
        .ok(
            Method::GET,
            &format!("/rest/v1/softwaremodules/{id}/artifacts"),
            None
        )
        .await
        .as_array()
        .unwrap()
        .is_empty());
    // Good upload: hashes computed on the way in; the file is named by its SHA-256.
    let bytes = random_bytes(90_000, 3);
    let (status, artifact) = upload("a.swu", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(artifact["sha256"], sha256);
    assert_eq!(artifact["size"], 90_000);
    assert_eq!(
        std::fs::read(server.dir.path().join("artifacts").join(&sha256)).unwrap(),
        bytes
    );
    // Same name again: 409. Same content under another name: stored once.
    assert_eq!(upload("a.swu", bytes.clone()).await.0, StatusCode::CONFLICT);
    assert_eq!(upload("b.swu", bytes.clone()).await.0, StatusCode::CREATED);
    assert_eq!(files_in(&server.dir.path().join("artifacts")), vec![sha256]);
    // Bad names and empty bodies.
    assert_eq!(upload("..", bytes.clone()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(upload("c.swu", Vec::new()).await.0, StatusCode::BAD_REQUEST);
    let (status, _) = mgmt
        .post(
            "/rest/v1/softwaremodules/999/artifacts?filename=x",
            json!("x"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn rollout_requests_are_validated() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    for id in ["d1", "d2", "d3"] {
        mgmt.device(id, &["t"]).await;
    }
    let (set, _) = mgmt.release("fw", "1", "a.swu", random_bytes(10, 4)).await;
    for (body, why) in [
        (
            json!({ "name": "r", "distributionSetId": set, "groups": [ { "targets": ["d1", "d2"] }, { "targets": ["d2"] } ] }),
            "a device in two groups",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "groups": [ { "targets": [] } ] }),
            "an empty group",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "groups": [ { "targets": ["nope"] } ] }),
            "an unknown device",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "tag": "t", "successThreshold": 101 }),
            "threshold over 100",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "tag": "t", "errorThreshold": -1 }),
            "negative threshold",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "tag": "t", "amountGroups": 0 }),
            "zero groups",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "tag": "none" }),
            "no devices",
        ),
        (
            json!({ "name": "r", "distributionSetId": set, "tag": "t", "type": "timeforced" }),
            "timeforced rollout",
        ),
        (
            json!({ "name": "", "distributionSetId": set, "tag": "t" }),
            "empty name",
        ),
    ] {
        let (status, error) = mgmt.post("/rest/v1/rollouts", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {error}");
    }
    let (status, _) = mgmt
        .post(
            "/rest/v1/rollouts",
            json!({ "name": "r", "distributionSetId": 999, "tag": "t" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(mgmt
        .ok(Method::GET, "/rest/v1/rollouts", None)
        .await
        .as_array()
        .unwrap()
        .is_empty());
    // amountGroups splits in order.
    let rollout = mgmt
        .ok(
            Method::POST,
            "/rest/v1/rollouts",
            Some(json!({ "name": "r", "distributionSetId": set, "tag": "t", "amountGroups": 2 })),
        )
        .await;
    let totals: Vec<i64> = rollout["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["counts"]["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [2, 1]);
    let id = rollout["id"].as_i64().unwrap();
    for operation in ["pause", "resume"] {
        let (status, _) = mgmt
            .post(&format!("/rest/v1/rollouts/{id}/{operation}"), json!(null))
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{operation} of a ready rollout"
        );
    }
    let (status, _) = mgmt
        .post(&format!("/rest/v1/rollouts/{id}/explode"), json!(null))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn tenants_are_separate() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    mgmt.ok(
        Method::POST,
        "/rest/v1/tenants",
        Some(json!({ "name": "plant-b" })),
    )
    .await;
    assert_eq!(
        mgmt.post("/rest/v1/tenants", json!({ "name": "plant-b" }))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        mgmt.post("/rest/v1/tenants", json!({ "name": "rest" }))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let token_a = mgmt.device("dev1", &[]).await;
    // The same controller id in plant-b is another device with another token.
    let response = mgmt
        .client
        .post(format!("{}/rest/v1/targets", server.base))
        .bearer_auth(&server.admin)
        .header("X-Keel-Tenant", "plant-b")
        .json(&json!({ "controllerId": "dev1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let token_b = response.json::<serde_json::Value>().await.unwrap()["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let a = SimDevice::new(&server.base, "dev1", &token_a);
    let mut b = SimDevice::new(&server.base, "dev1", &token_b);
    b.tenant = "plant-b".into();
    a.poll().await.unwrap();
    b.poll().await.unwrap();
    // A token is valid only in its own tenant.
    let mut a_in_b = SimDevice::new(&server.base, "dev1", &token_a);
    a_in_b.tenant = "plant-b".into();
    assert_eq!(
        a_in_b.get(&a_in_b.url()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // A set of plant-b cannot be assigned in the default tenant.
    let response = mgmt
        .client
        .post(format!("{}/rest/v1/softwaremodules", server.base))
        .bearer_auth(&server.admin)
        .header("X-Keel-Tenant", "plant-b")
        .json(&json!({ "name": "b-fw", "version": "1" }))
        .send()
        .await
        .unwrap();
    let module_b = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        mgmt.get(&format!("/rest/v1/softwaremodules/{module_b}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let unknown = mgmt
        .client
        .get(format!("{}/rest/v1/targets", server.base))
        .bearer_auth(&server.admin)
        .header("X-Keel-Tenant", "nowhere")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
