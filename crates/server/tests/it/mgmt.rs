//! Management API behaviour beyond the happy path: streamed uploads (limits, cut-offs, dedup),
//! validation of rollouts, tenants and the X-Keel-Tenant header.

use crate::common;

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
        .await["content"]
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
    assert!(
        mgmt.ok(Method::GET, "/rest/v1/rollouts", None).await["content"]
            .as_array()
            .unwrap()
            .is_empty()
    );
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

/// Issue #12: a misspelt field must not be silently ignored (the device token case: the intended
/// token was dropped and a random one set, locking the device out).
#[tokio::test]
async fn unknown_body_fields_and_query_parameters_are_refused() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("dev1", &["a"]).await;
    let (status, error) = mgmt
        .post(
            "/rest/v1/targets/dev1/token",
            json!({ "securityToken": "intended-token-123" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"], "bad_request");
    assert_eq!(
        error["message"],
        "unknown field \"securityToken\" in the request body; expected one of: token"
    );
    // Nothing changed: the old token still works, the intended one does not.
    SimDevice::new(&server.base, "dev1", &token)
        .poll()
        .await
        .unwrap();
    let (status, _) = SimDevice::new(&server.base, "dev1", "intended-token-123")
        .get_json(&format!("{}/default/controller/v1/dev1", server.base))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A misspelt field on create: 400 and no device.
    let (status, error) = mgmt
        .post(
            "/rest/v1/targets",
            json!({ "controllerId": "dev2", "tag": ["a"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(
        error["message"],
        "unknown field \"tag\" in the request body; expected one of: controllerId, name, securityToken, tags"
    );
    assert_eq!(
        mgmt.get("/rest/v1/targets/dev2").await.0,
        StatusCode::NOT_FOUND
    );

    // Nested objects and every other body are strict as well.
    let (set, _) = mgmt.release("fw", "1", "a.swu", random_bytes(10, 7)).await;
    let window =
        json!({ "schedule": "0 0 3 ? * *", "duration": "01:00:00", "timezone": "Z", "tz": "Z" });
    let refused = [
        (
            "/rest/v1/targets/dev1/assignedDS".to_string(),
            json!({ "id": set, "maintenanceWindow": window }),
            "maintenanceWindow.tz",
        ),
        (
            "/rest/v1/targets/dev1/assignedDS".to_string(),
            json!({ "id": set, "forceTime": 1 }),
            "forceTime",
        ),
        (
            format!("/rest/v1/distributionsets/{set}/assignedTargets"),
            json!({ "targets": ["dev1"], "ids": [] }),
            "ids",
        ),
        (
            "/rest/v1/softwaremodules".to_string(),
            json!({ "name": "m", "version": "1", "vendor": "x" }),
            "vendor",
        ),
        (
            "/rest/v1/distributionsets".to_string(),
            json!({ "name": "s", "version": "1", "modules": [], "type": "os" }),
            "type",
        ),
        (
            "/rest/v1/rollouts".to_string(),
            json!({ "name": "r", "distributionSetId": set, "tag": "a", "groupCount": 2 }),
            "groupCount",
        ),
        (
            "/rest/v1/rollouts".to_string(),
            json!({ "name": "r", "distributionSetId": set, "groups": [{ "tag": "a", "percent": 50 }] }),
            "groups[0].percent",
        ),
        (
            "/rest/v1/tokens".to_string(),
            json!({ "name": "t", "role": "viewer", "colour": "x" }),
            "colour",
        ),
        (
            "/rest/v1/tenants".to_string(),
            json!({ "name": "t2", "description": "x" }),
            "description",
        ),
    ];
    for (path, body, field) in refused {
        let (status, error) = mgmt.post(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "unknown field \"{field}\" in the request body; expected one of: "
            )),
            "{path}: {message}"
        );
    }
    let (status, error) = mgmt
        .send(
            Method::PUT,
            "/rest/v1/targets/dev1/tags",
            Some(json!({ "tags": [], "replace": true })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(mgmt.ok(Method::GET, "/rest/v1/rollouts", None).await["total"] == 0);
    assert_eq!(
        mgmt.ok(Method::GET, "/rest/v1/targets/dev1/actions", None)
            .await["total"],
        0
    );

    // Unknown query parameters of list endpoints and other query-taking routes.
    for path in [
        "/rest/v1/targets?pagesize=10",
        "/rest/v1/targets?tags=a",
        "/rest/v1/softwaremodules?name=fw",
        "/rest/v1/distributionsets?size=1",
        "/rest/v1/rollouts?status=running",
        "/rest/v1/targets/dev1/actions?active=true",
        "/rest/v1/tokens?role=admin",
        "/rest/v1/tenants?x=1",
    ] {
        let (status, error) = mgmt.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("unknown query parameter"),
            "{path}: {error}"
        );
    }
    let (status, error) = mgmt
        .send(
            Method::DELETE,
            "/rest/v1/targets/dev1/actions/1?forced=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

    // The device API stays lenient: real clients send fields keel does not know.
    let device = SimDevice::new(&server.base, "dev1", &token);
    let status = device
        .client
        .put(format!("{}/configData", device.url()))
        .header("Authorization", format!("TargetToken {token}"))
        .json(&json!({ "mode": "merge", "data": { "hw": "rev2" }, "id": "", "time": "20240101T000000", "status": { "execution": "closed", "result": { "finished": "success" } } }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn every_list_is_paged_sorted_and_filtered_in_hawkbit_style() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    for i in 0..120 {
        let tag = if i % 3 == 0 { "line-1" } else { "line-2" };
        let (status, body) = mgmt
            .post(
                "/rest/v1/targets",
                json!({ "controllerId": format!("gw-{i:03}"), "name": format!("Gateway {i}"), "tags": [tag] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["controllerId"].as_str().unwrap().to_string())
            .collect()
    };
    // Default: the first 50, in creation order, with the total.
    let first = mgmt.ok(Method::GET, "/rest/v1/targets", None).await;
    assert_eq!(first["total"], 120);
    assert_eq!(first["size"], 50);
    assert_eq!(ids(&first)[0], "gw-000");
    assert_eq!(ids(&first)[49], "gw-049");
    assert_eq!(first["content"][0]["tags"], json!(["line-1"]));
    // offset + limit walk the whole list exactly once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = mgmt
            .ok(
                Method::GET,
                &format!("/rest/v1/targets?offset={offset}&limit=33"),
                None,
            )
            .await;
        assert_eq!(page["total"], 120);
        let got = ids(&page);
        if got.is_empty() {
            break;
        }
        offset += got.len();
        seen.extend(got);
    }
    assert_eq!(
        seen,
        (0..120).map(|i| format!("gw-{i:03}")).collect::<Vec<_>>()
    );
    // Sort, filter with wildcards (case-insensitive), the tag field and the legacy tag parameter.
    let page = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets?sort=controllerId:DESC&limit=3",
            None,
        )
        .await;
    assert_eq!(ids(&page), ["gw-119", "gw-118", "gw-117"]);
    let page = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets?q=controllerId==GW-11*&sort=name:ASC",
            None,
        )
        .await;
    assert_eq!(page["total"], 10);
    assert_eq!(ids(&page)[0], "gw-110");
    let page = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets?q=tag==line-1;controllerId==gw-0*&limit=500",
            None,
        )
        .await;
    assert_eq!(page["total"], 34);
    assert!(ids(&page).iter().all(|id| id.starts_with("gw-0")));
    let page = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets?tag=line-1&q=controllerId==gw-000,controllerId==gw-001",
            None,
        )
        .await;
    assert_eq!(ids(&page), ["gw-000"]);
    let page = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets?q=updateStatus==unknown;lastPollAt!=5&limit=0",
            None,
        )
        .await;
    assert_eq!(
        (page["total"].clone(), page["size"].clone()),
        (json!(120), json!(0))
    );
    // Wrong paging: 400 naming the parameter and what is allowed.
    for (query, expected) in [
        ("limit=501", "limit: an integer from 0 to 500"),
        ("offset=-1", "offset: an integer"),
        (
            "sort=token:ASC",
            "sort: unknown field \"token\"; sortable fields: controllerId, name",
        ),
        ("sort=name:sideways", "sort: direction"),
        (
            "q=token==x",
            "q: unknown field \"token\"; filterable fields: controllerId",
        ),
        ("q=createdAt==yesterday", "q: createdAt is a number"),
        ("q=name", "q: expected an operator after \"name\""),
    ] {
        let (status, error) = mgmt.get(&format!("/rest/v1/targets?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert!(
            error["message"].as_str().unwrap().starts_with(expected),
            "{query}: {error}"
        );
    }

    // The other lists have the same shape and parameters.
    for i in 0..3 {
        mgmt.release("fw", &format!("1.{i}"), "a.swu", random_bytes(10, i))
            .await;
    }
    let modules = mgmt
        .ok(
            Method::GET,
            "/rest/v1/softwaremodules?sort=version:DESC&limit=2",
            None,
        )
        .await;
    assert_eq!(modules["total"], 3);
    assert_eq!(modules["content"][0]["version"], "1.2");
    assert_eq!(modules["size"], 2);
    let sets = mgmt
        .ok(
            Method::GET,
            "/rest/v1/distributionsets?q=version==1.1",
            None,
        )
        .await;
    assert_eq!(sets["total"], 1);
    let set = sets["content"][0]["id"].as_i64().unwrap();
    let module = modules["content"][0]["id"].as_i64().unwrap();
    let artifacts = mgmt
        .ok(
            Method::GET,
            &format!("/rest/v1/softwaremodules/{module}/artifacts?q=filename==*.swu"),
            None,
        )
        .await;
    assert_eq!(artifacts["total"], 1);
    assert_eq!(artifacts["content"][0]["filename"], "a.swu");
    for _ in 0..2 {
        mgmt.ok(
            Method::POST,
            "/rest/v1/targets/gw-000/assignedDS",
            Some(json!({ "id": set, "type": "soft" })),
        )
        .await;
    }
    let actions = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets/gw-000/actions?q=active==true;status!=canceling",
            None,
        )
        .await;
    // The first assignment is being canceled (still open), the second one runs.
    assert_eq!(actions["total"], 1, "{actions}");
    assert_eq!(actions["content"][0]["status"], "running");
    assert_eq!(actions["content"][0]["id"].as_i64(), Some(2));
    let actions = mgmt
        .ok(
            Method::GET,
            "/rest/v1/targets/gw-000/actions?sort=id:DESC",
            None,
        )
        .await;
    assert_eq!(actions["total"], 2);
    assert!(actions["content"][0]["id"].as_i64() > actions["content"][1]["id"].as_i64());
    mgmt.ok(
        Method::POST,
        "/rest/v1/rollouts",
        Some(json!({ "name": "r1", "distributionSetId": set, "tag": "line-2" })),
    )
    .await;
    let rollouts = mgmt
        .ok(
            Method::GET,
            "/rest/v1/rollouts?q=status==ready;name==r*",
            None,
        )
        .await;
    assert_eq!(rollouts["total"], 1);
    // (the tenant's own tokens: the cross-tenant admin token is not one of them)
    mgmt.ok(
        Method::POST,
        "/rest/v1/tokens",
        Some(json!({ "name": "tenant-admin", "role": "admin" })),
    )
    .await;
    mgmt.ok(
        Method::POST,
        "/rest/v1/tokens",
        Some(json!({ "name": "ci", "role": "operator" })),
    )
    .await;
    let tokens = mgmt
        .ok(Method::GET, "/rest/v1/tokens?q=role==admin", None)
        .await;
    assert_eq!(tokens["total"], 1, "{tokens}");
    assert_eq!(tokens["content"][0]["name"], "tenant-admin");
    let tenants = mgmt
        .ok(Method::GET, "/rest/v1/tenants?q=name==def*", None)
        .await;
    assert_eq!(tenants["content"][0]["name"], "default");
    assert_eq!(tenants["total"], 1);
    server.stop().await;
}

/// Issue #12: the OpenAPI document lists what the server really answers (scripts/schemathesis.sh
/// checks it against a live server; this pins the cases the issue named).
#[tokio::test]
async fn openapi_document_lists_real_statuses_nullables_and_parameters() {
    let server = TestServer::start().await;
    let (status, doc) = server
        .mgmt()
        .with_token(None)
        .get("/rest/v1/openapi.json")
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let mut codes: Vec<String> = paths[path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} not documented"))
            .keys()
            .cloned()
            .collect();
        codes.sort();
        codes
    };
    for (path, method, code) in [
        ("/rest/v1/targets", "post", "201"),
        ("/rest/v1/targets", "post", "409"),
        ("/rest/v1/targets", "post", "413"),
        ("/rest/v1/targets/{controllerId}", "delete", "204"),
        (
            "/rest/v1/targets/{controllerId}/actions/{actionId}",
            "delete",
            "409",
        ),
        ("/rest/v1/rollouts/{id}/start", "post", "409"),
        ("/rest/v1/softwaremodules/{id}/artifacts", "post", "503"),
        ("/rest/v1/targets", "get", "429"),
        (
            "/{tenant}/controller/v1/{controllerId}/deploymentBase/{actionId}/feedback",
            "post",
            "410",
        ),
    ] {
        assert!(
            statuses(path, method).contains(&code.to_string()),
            "{method} {path}: {code}"
        );
    }
    let target = &doc["components"]["schemas"]["Target"]["properties"];
    for field in [
        "installedActionId",
        "installedDistributionSetId",
        "lastPollAt",
        "address",
    ] {
        assert_eq!(target[field]["nullable"], true, "Target.{field}");
    }
    assert_eq!(
        doc["components"]["schemas"]["NewTarget"]["additionalProperties"],
        false
    );
    let parameters = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let list = parameters("/rest/v1/targets", "get");
    for name in ["tag", "offset", "limit", "sort", "q"] {
        assert!(
            list.contains(&name.to_string()),
            "GET /targets: {name} in {list:?}"
        );
    }
    assert!(parameters(
        "/rest/v1/targets/{controllerId}/actions/{actionId}",
        "delete"
    )
    .contains(&"force".to_string()));
    assert!(paths["/{tenant}/controller/v1/{controllerId}/tuf/{file}"]["get"].is_object());
    assert_eq!(
        paths["/rest/v1/targets"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["required"],
        json!(["content", "total", "size"])
    );
    server.stop().await;
}
