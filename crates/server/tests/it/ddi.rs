//! The hawkBit DDI device API end to end, with a real HTTP client acting as the device.

use crate::common;

use common::{random_bytes, Outcome, SimDevice, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn deployment_download_feedback_and_installed_base() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &[]).await;
    let image = random_bytes(300_000, 1);
    let (set_id, module_id) = mgmt
        .release("gateway-fw", "1.2.0", "update.swu", image.clone())
        .await;
    let device = SimDevice::new(&server.base, "dev1", &token);

    // Nothing assigned: sleep in HH:MM:SS, configData requested on first contact, no deployment.
    let base = device.poll().await.unwrap();
    assert_eq!(base["config"]["polling"]["sleep"], "00:00:01");
    assert!(base["_links"]["deploymentBase"].is_null());
    assert_eq!(
        base["_links"]["configData"]["href"],
        format!("{}/configData", device.url())
    );

    let action = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set_id })),
        )
        .await;
    let action_id = action["id"].as_i64().unwrap();
    let base = device.poll().await.unwrap();
    let href = base["_links"]["deploymentBase"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        href.starts_with(&format!("{}/deploymentBase/{action_id}?c=", device.url())),
        "{href}"
    );

    // deploymentBase: exactly the shape SWUpdate and rauc-hawkbit-updater read.
    let (status, deployment) = device.get_json(&href).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deployment["id"], json!(action_id.to_string()));
    assert_eq!(deployment["deployment"]["download"], "forced");
    assert_eq!(deployment["deployment"]["update"], "forced");
    assert!(deployment["deployment"].get("maintenanceWindow").is_none());
    let chunk = &deployment["deployment"]["chunks"][0];
    assert_eq!(
        (
            chunk["part"].as_str(),
            chunk["name"].as_str(),
            chunk["version"].as_str()
        ),
        (Some("os"), Some("gateway-fw"), Some("1.2.0"))
    );
    let artifact = &chunk["artifacts"][0];
    assert_eq!(artifact["filename"], "update.swu");
    assert_eq!(artifact["size"], json!(image.len()));
    assert!(artifact["size"].is_i64());
    use sha1::Digest as _;
    assert_eq!(
        artifact["hashes"]["sha1"],
        hex::encode(sha1::Sha1::digest(&image))
    );
    assert_eq!(
        artifact["hashes"]["md5"],
        hex::encode(md5::Md5::digest(&image))
    );
    assert_eq!(
        artifact["hashes"]["sha256"],
        hex::encode(sha2::Sha256::digest(&image))
    );
    let download = format!(
        "{}/softwaremodules/{module_id}/artifacts/update.swu",
        device.url()
    );
    assert_eq!(artifact["_links"]["download"]["href"], download);
    assert_eq!(artifact["_links"]["download-http"]["href"], download);
    assert_eq!(
        artifact["_links"]["md5sum-http"]["href"],
        format!("{download}.MD5SUM")
    );

    // Artifact list and the MD5SUM file.
    let (status, list) = device
        .get_json(&format!(
            "{}/softwaremodules/{module_id}/artifacts",
            device.url()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["hashes"], artifact["hashes"]);
    let md5sum = device
        .get(&format!("{download}.MD5SUM"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        md5sum,
        format!(
            "{}  update.swu",
            artifact["hashes"]["md5"].as_str().unwrap()
        )
    );

    // Download interrupted after 100 000 bytes, resumed with Range.
    let full = device.get(&download).await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), image.as_slice());
    let first = device
        .client
        .get(&download)
        .header("Authorization", &device.auth)
        .header("Range", "bytes=0-99999")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99999/{}", image.len())
    );
    let mut resumed = first.bytes().await.unwrap().to_vec();
    let rest = device
        .client
        .get(&download)
        .header("Authorization", &device.auth)
        .header("Range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    resumed.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(resumed, image);
    let suffix = device
        .client
        .get(&download)
        .header("Authorization", &device.auth)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(
        suffix.bytes().await.unwrap().as_ref(),
        &image[image.len() - 10..]
    );
    let beyond = device
        .client
        .get(&download)
        .header("Authorization", &device.auth)
        .header("Range", "bytes=999999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", image.len())
    );
    let wrong_etag = device
        .client
        .get(&download)
        .header("Authorization", &device.auth)
        .header("If-Match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_etag.status(), StatusCode::PRECONDITION_FAILED);

    // Feedback: every execution value is accepted; progress is stored.
    let feedback_url = format!("{}/deploymentBase/{action_id}/feedback", device.url());
    for (execution, expected) in [
        ("download", "download"),
        ("downloaded", "downloaded"),
        ("scheduled", "running"),
        ("resumed", "running"),
        ("rejected", "warning"),
        ("proceeding", "running"),
    ] {
        let body = SimDevice::feedback(execution, "none", execution, Some((1, 3)));
        assert_eq!(
            device.post_json(&feedback_url, &body).await.unwrap(),
            StatusCode::OK,
            "{execution}"
        );
        assert_eq!(
            mgmt.action("dev1", action_id).await["status"],
            expected,
            "{execution}"
        );
    }
    let history = mgmt.action("dev1", action_id).await["history"].clone();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["progressCnt"].as_i64(), last["progressOf"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(last["messages"], json!(["proceeding"]));

    let done = SimDevice::feedback("closed", "success", "installed", None);
    assert_eq!(
        device.post_json(&feedback_url, &done).await.unwrap(),
        StatusCode::OK
    );
    let action = mgmt.action("dev1", action_id).await;
    assert_eq!(
        (action["status"].as_str(), action["active"].as_bool()),
        (Some("finished"), Some(false))
    );
    // Closed: further feedback is 410 Gone, and nothing is added.
    let entries = action["history"].as_array().unwrap().len();
    assert_eq!(
        device.post_json(&feedback_url, &done).await.unwrap(),
        StatusCode::GONE
    );
    assert_eq!(
        mgmt.action("dev1", action_id).await["history"]
            .as_array()
            .unwrap()
            .len(),
        entries
    );

    // The poll now links installedBase (and asks for attributes again after an update).
    let base = device.poll().await.unwrap();
    assert!(base["_links"]["deploymentBase"].is_null());
    let installed = base["_links"]["installedBase"]["href"].as_str().unwrap();
    assert_eq!(
        installed,
        format!("{}/installedBase/{action_id}", device.url())
    );
    let (status, installed) = device.get_json(installed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        installed["deployment"]["chunks"][0]["artifacts"][0]["hashes"],
        artifact["hashes"]
    );
    let target = mgmt.ok(Method::GET, "/rest/v1/targets/dev1", None).await;
    assert_eq!(target["updateStatus"], "in_sync");
    assert_eq!(target["installedDistributionSetId"], json!(set_id));
    server.stop().await;
}

#[tokio::test]
async fn config_data_modes() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &[]).await;
    let device = SimDevice::new(&server.base, "dev1", &token);
    let url = format!("{}/configData", device.url());
    let put = |body: Value| {
        let device = device.clone();
        let url = url.clone();
        async move {
            let response = device
                .client
                .put(&url)
                .header("Authorization", &device.auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status()
        }
    };
    let attributes = || async {
        mgmt.ok(Method::GET, "/rest/v1/targets/dev1", None).await["attributes"].clone()
    };

    // No mode means merge; SWUpdate adds id/time/status fields that are ignored.
    assert_eq!(put(json!({ "id": "", "time": "20260101T000000", "status": {}, "data": { "hw": "2", "sn": "42" } })).await, StatusCode::OK);
    assert_eq!(attributes().await, json!({ "hw": "2", "sn": "42" }));
    assert!(
        device.poll().await.unwrap()["_links"]["configData"].is_null(),
        "attributes were sent"
    );
    assert_eq!(
        put(json!({ "mode": "merge", "data": { "sn": "43", "os": "bookworm" } })).await,
        StatusCode::OK
    );
    assert_eq!(
        attributes().await,
        json!({ "hw": "2", "sn": "43", "os": "bookworm" })
    );
    assert_eq!(
        put(json!({ "mode": "remove", "data": { "os": "" } })).await,
        StatusCode::OK
    );
    assert_eq!(attributes().await, json!({ "hw": "2", "sn": "43" }));
    assert_eq!(
        put(json!({ "mode": "replace", "data": { "only": "this" } })).await,
        StatusCode::OK
    );
    assert_eq!(attributes().await, json!({ "only": "this" }));
    // Bad bodies: clear JSON errors, nothing changed.
    assert_eq!(
        put(json!({ "mode": "bogus", "data": {} })).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(json!({ "data": { "nested": { "a": 1 } } })).await,
        StatusCode::BAD_REQUEST
    );
    let too_many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        put(json!({ "mode": "replace", "data": too_many })).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(attributes().await, json!({ "only": "this" }));
    // Operator can ask again.
    mgmt.ok(
        Method::POST,
        "/rest/v1/targets/dev1/requestAttributes",
        None,
    )
    .await;
    assert!(device.poll().await.unwrap()["_links"]["configData"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn cancel_handshake_and_superseding_assignment() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &[]).await;
    let (set1, _) = mgmt
        .release("fw", "1", "a.swu", random_bytes(1000, 2))
        .await;
    let (set2, _) = mgmt
        .release("fw", "2", "b.swu", random_bytes(1000, 3))
        .await;
    let device = SimDevice::new(&server.base, "dev1", &token);
    let first = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set1 })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    // A second assignment supersedes the first: the device is told to cancel it first.
    let second = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set2 })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let base = device.poll().await.unwrap();
    assert!(base["_links"]["deploymentBase"].is_null());
    let cancel_href = base["_links"]["cancelAction"]["href"].as_str().unwrap();
    assert_eq!(
        cancel_href,
        format!("{}/cancelAction/{first}", device.url())
    );
    let (status, cancel) = device.get_json(cancel_href).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cancel,
        json!({ "id": first.to_string(), "cancelAction": { "stopId": first.to_string() } })
    );
    // deploymentBase of a canceling action is 404 (hawkBit).
    let (status, _) = device
        .get_json(&format!("{}/deploymentBase/{first}", device.url()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Progress reported on a canceling action does not hide the cancel request.
    let fb = SimDevice::feedback("proceeding", "none", "still busy", None);
    assert_eq!(
        device
            .post_json(
                &format!("{}/deploymentBase/{first}/feedback", device.url()),
                &fb
            )
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert_eq!(mgmt.action("dev1", first).await["status"], "canceling");
    // Cancel feedback on an action that is not canceling: 405 (hawkBit).
    let closed = SimDevice::feedback("closed", "success", "ok", None);
    assert_eq!(
        device
            .post_json(
                &format!("{}/cancelAction/{second}/feedback", device.url()),
                &closed
            )
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        device
            .post_json(&format!("{cancel_href}/feedback"), &closed)
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert_eq!(mgmt.action("dev1", first).await["status"], "canceled");
    assert_eq!(
        device
            .post_json(&format!("{cancel_href}/feedback"), &closed)
            .await
            .unwrap(),
        StatusCode::GONE
    );
    // Now the second action is offered; the simulator installs it.
    let handled = device.cycle(Outcome::Succeed, 1).await.unwrap();
    assert_eq!(handled.action_id, Some(second));
    assert_eq!(mgmt.action("dev1", second).await["status"], "finished");

    // Operator cancel; the device rejects it and the update goes on.
    let (set3, _) = mgmt
        .release("fw", "3", "c.swu", random_bytes(1000, 4))
        .await;
    let third = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set3 })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let canceled = mgmt
        .ok(
            Method::DELETE,
            &format!("/rest/v1/targets/dev1/actions/{third}"),
            None,
        )
        .await;
    assert_eq!(canceled["status"], "canceling");
    let rejected = SimDevice::feedback("rejected", "none", "too late", None);
    assert_eq!(
        device
            .post_json(
                &format!("{}/cancelAction/{third}/feedback", device.url()),
                &rejected
            )
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert_eq!(mgmt.action("dev1", third).await["status"], "running");
    assert!(device.poll().await.unwrap()["_links"]["deploymentBase"].is_object());
    // Forced cancel closes at once.
    let forced = mgmt
        .ok(
            Method::DELETE,
            &format!("/rest/v1/targets/dev1/actions/{third}?force=true"),
            None,
        )
        .await;
    assert_eq!(
        (forced["status"].as_str(), forced["active"].as_bool()),
        (Some("canceled"), Some(false))
    );
    let base = device.poll().await.unwrap();
    assert!(base["_links"]["deploymentBase"].is_null() && base["_links"]["cancelAction"].is_null());
    server.stop().await;
}

#[tokio::test]
async fn action_types_and_maintenance_window() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let (set, _) = mgmt.release("fw", "1", "a.swu", random_bytes(100, 5)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let cases = [
        (json!({ "type": "soft" }), "attempt", "attempt", None),
        (json!({ "type": "forced" }), "forced", "forced", None),
        (json!({ "type": "downloadonly" }), "forced", "skip", None),
        (
            json!({ "type": "timeforced", "forcetime": now + 3_600_000 }),
            "attempt",
            "attempt",
            None,
        ),
        (
            json!({ "type": "timeforced", "forcetime": now - 1000 }),
            "forced",
            "forced",
            None,
        ),
        // A window open every second for 23 h is open now; one at 00:00:00 on 1 January for one second is closed.
        (
            json!({ "type": "forced", "maintenanceWindow": { "schedule": "* * * * * ?", "duration": "23:00:00", "timezone": "+00:00" } }),
            "forced",
            "forced",
            Some("available"),
        ),
        (
            json!({ "type": "forced", "maintenanceWindow": { "schedule": "0 0 0 1 1 ?", "duration": "00:00:01", "timezone": "Z" } }),
            "forced",
            "skip",
            Some("unavailable"),
        ),
    ];
    for (i, (options, download, update, window)) in cases.into_iter().enumerate() {
        let id = format!("dev{i}");
        let token = mgmt.device(&id, &[]).await;
        let mut body = options.clone();
        body["id"] = json!(set);
        mgmt.ok(
            Method::POST,
            &format!("/rest/v1/targets/{id}/assignedDS"),
            Some(body),
        )
        .await;
        let device = SimDevice::new(&server.base, &id, &token);
        let href = device.poll().await.unwrap()["_links"]["deploymentBase"]["href"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, deployment) = device.get_json(&href).await;
        let d = &deployment["deployment"];
        assert_eq!(
            (d["download"].as_str(), d["update"].as_str()),
            (Some(download), Some(update)),
            "{options}"
        );
        assert_eq!(d["maintenanceWindow"].as_str(), window, "{options}");
    }
    // Invalid options are rejected with a JSON error.
    mgmt.device("bad", &[]).await;
    for body in [
        json!({ "id": set, "type": "sometimes" }),
        json!({ "id": set, "type": "timeforced" }),
        json!({ "id": set, "maintenanceWindow": { "schedule": "nonsense", "duration": "01:00:00", "timezone": "Z" } }),
        json!({ "id": set, "maintenanceWindow": { "schedule": "0 0 3 * * ?", "duration": "1h", "timezone": "Z" } }),
        json!({ "id": set, "maintenanceWindow": { "schedule": "0 0 3 * * ?", "duration": "01:00:00", "timezone": "CET" } }),
    ] {
        let (status, error) = mgmt
            .post("/rest/v1/targets/bad/assignedDS", body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"], "bad_request");
    }
    assert!(mgmt
        .ok(Method::GET, "/rest/v1/targets/bad/actions", None)
        .await["content"]
        .as_array()
        .unwrap()
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &[]).await;
    let (set, _) = mgmt.release("fw", "1", "a.swu", random_bytes(100, 6)).await;
    let action = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let device = SimDevice::new(&server.base, "dev1", &token);
    let url = format!("{}/deploymentBase/{action}/feedback", device.url());
    let raw = |body: Vec<u8>| {
        let device = device.clone();
        let url = url.clone();
        async move {
            let response = device
                .client
                .post(&url)
                .header("Authorization", &device.auth)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for body in [
        b"{".to_vec(),
        b"[]".to_vec(),
        b"{\"status\": {}}".to_vec(),
        b"{\"status\": {\"execution\": \"exploded\", \"result\": {\"finished\": \"none\"}}}".to_vec(),
        b"{\"status\": {\"execution\": \"closed\", \"result\": {\"finished\": \"maybe\"}}}".to_vec(),
        b"{\"status\": {\"execution\": \"closed\", \"result\": {\"finished\": \"none\", \"progress\": {\"cnt\": \"x\"}}}}".to_vec(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let (status, error) = raw(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error["error"], "bad_request");
    }
    let (status, error) = raw(vec![b' '; 100_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["error"], "payload_too_large");
    // Non-numeric ids are "not found", not a crash.
    let (status, _) = device
        .get_json(&format!("{}/deploymentBase/abc", device.url()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = device
        .get_json(&format!(
            "{}/deploymentBase/99999999999999999999999",
            device.url()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was recorded and the action is still open.
    let action = mgmt.action("dev1", action).await;
    assert_eq!(action["status"], "running");
    assert_eq!(action["history"].as_array().unwrap().len(), 1);
    // Management API: same style.
    let (status, error) = mgmt.post("/rest/v1/targets", json!({ "name": 5 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "bad_request");
    let (status, _) = mgmt
        .post("/rest/v1/targets", json!({ "controllerId": "a/b" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = mgmt
        .post("/rest/v1/targets", json!({ "controllerId": "dev1" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn gateway_token_registers_unknown_devices() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let gateway = mgmt
        .ok(Method::PUT, "/rest/v1/tenants/default/gatewaytoken", None)
        .await["gatewayToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut device = SimDevice::new(&server.base, "new-device", "x");
    device.auth = format!("GatewayToken {gateway}");
    device.poll().await.unwrap();
    let target = mgmt
        .ok(Method::GET, "/rest/v1/targets/new-device", None)
        .await;
    assert_eq!(target["controllerId"], "new-device");
    // The gateway acts for any device: it runs a full update for it.
    let (set, _) = mgmt.release("fw", "1", "a.swu", random_bytes(500, 7)).await;
    let action = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/new-device/assignedDS",
            Some(json!({ "id": set })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let handled = device.cycle(Outcome::Succeed, 2).await.unwrap();
    assert_eq!(handled.action_id, Some(action));
    assert_eq!(
        mgmt.action("new-device", action).await["status"],
        "finished"
    );
    // Disabled gateway token: 401.
    mgmt.ok(
        Method::DELETE,
        "/rest/v1/tenants/default/gatewaytoken",
        None,
    )
    .await;
    assert_eq!(
        device.get(&device.url()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(format!("{}/rest/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let operations = keel_server::openapi::operations();
    assert!(operations.len() > 40);
    for (method, path) in operations {
        assert!(
            doc["paths"][&path][method.to_lowercase()].is_object(),
            "{method} {path} missing from the document"
        );
        // Every documented route is routed: an unauthenticated request gets a JSON error (or the
        // document itself), never axum's empty "no route" 404/405.
        let concrete = path
            .replace("{tenant}", "default")
            .replace("{controllerId}", "dev1")
            .replace("{name}", "default")
            .replace("{fileName}", "a.swu")
            .replace(['{', '}'], "")
            .replace("actionId", "1")
            .replace("moduleId", "1")
            .replace("/id", "/1");
        let response = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{concrete}", server.base),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            body.is_object(),
            "{method} {concrete}: {status} without a JSON body (not routed?)"
        );
    }
    server.stop().await;
}
