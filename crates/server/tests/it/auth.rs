//! Authentication and isolation: devices only see their own actions and artifacts; the management
//! API enforces roles. Every rejected request is checked to have changed nothing.

use crate::common;

use common::{random_bytes, SimDevice, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn snapshot(mgmt: &common::Mgmt, devices: &[&str]) -> Value {
    let mut state = serde_json::Map::new();
    for id in devices {
        let mut target = mgmt
            .ok(Method::GET, &format!("/rest/v1/targets/{id}"), None)
            .await;
        // Last-poll bookkeeping is not device state.
        target.as_object_mut().unwrap().remove("lastPollAt");
        target.as_object_mut().unwrap().remove("address");
        let actions = mgmt
            .ok(Method::GET, &format!("/rest/v1/targets/{id}/actions"), None)
            .await;
        let mut histories = Vec::new();
        for action in actions["content"].as_array().unwrap() {
            histories.push(mgmt.action(id, action["id"].as_i64().unwrap()).await);
        }
        state.insert(
            id.to_string(),
            json!({ "target": target, "actions": histories }),
        );
    }
    state.insert(
        "targets".into(),
        mgmt.ok(Method::GET, "/rest/v1/targets", None).await,
    );
    state.insert(
        "rollouts".into(),
        mgmt.ok(Method::GET, "/rest/v1/rollouts", None).await,
    );
    state.insert(
        "sets".into(),
        mgmt.ok(Method::GET, "/rest/v1/distributionsets", None)
            .await,
    );
    state.insert(
        "modules".into(),
        mgmt.ok(Method::GET, "/rest/v1/softwaremodules", None).await,
    );
    Value::Object(state)
}

#[tokio::test]
async fn devices_are_isolated_and_tokens_checked() {
    // Dozens of wrong credentials for dev-a from one address: throttled to 429 otherwise
    // (tests/it/abuse.rs checks that).
    let server = TestServer::start_with(|config| config.no_auth_throttle = true).await;
    let mgmt = server.mgmt();
    let token_a = mgmt.device("dev-a", &[]).await;
    let token_b = mgmt.device("dev-b", &[]).await;
    let (set_a, module_a) = mgmt
        .release("fw-a", "1", "a.swu", random_bytes(2000, 1))
        .await;
    let (set_b, module_b) = mgmt
        .release("fw-b", "1", "b.swu", random_bytes(2000, 2))
        .await;
    let action_a = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev-a/assignedDS",
            Some(json!({ "id": set_a })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let action_b = mgmt
        .ok(
            Method::POST,
            "/rest/v1/targets/dev-b/assignedDS",
            Some(json!({ "id": set_b })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let a = SimDevice::new(&server.base, "dev-a", &token_a);
    let before = snapshot(&mgmt, &["dev-a", "dev-b"]).await;

    let closed = SimDevice::feedback("closed", "success", "hijack", None);
    // Every DDI endpoint of dev-a, with bad credentials: 401 and a JSON error.
    let endpoints = [
        (Method::GET, a.url()),
        (
            Method::GET,
            format!("{}/deploymentBase/{action_a}", a.url()),
        ),
        (
            Method::POST,
            format!("{}/deploymentBase/{action_a}/feedback", a.url()),
        ),
        (Method::GET, format!("{}/cancelAction/{action_a}", a.url())),
        (
            Method::POST,
            format!("{}/cancelAction/{action_a}/feedback", a.url()),
        ),
        (Method::PUT, format!("{}/configData", a.url())),
        (Method::GET, format!("{}/installedBase/{action_a}", a.url())),
        (
            Method::GET,
            format!("{}/softwaremodules/{module_a}/artifacts", a.url()),
        ),
        (
            Method::GET,
            format!("{}/softwaremodules/{module_a}/artifacts/a.swu", a.url()),
        ),
    ];
    let bad_credentials: [Option<String>; 7] = [
        None,
        Some(String::new()),
        Some("TargetToken".into()),
        Some("TargetToken wrong-token-value".into()),
        Some(format!("TargetToken {token_b}")), // another device's valid token
        Some(format!("Bearer {}", server.admin)), // a management token is not a device token
        Some("GatewayToken anything".into()),   // no gateway token configured
    ];
    for (method, url) in &endpoints {
        for credential in &bad_credentials {
            let mut request = a.client.request(method.clone(), url);
            if let Some(credential) = credential {
                request = request.header("Authorization", credential);
            }
            if *method != Method::GET {
                request =
                    request.json(&json!({ "status": closed["status"], "data": { "x": "y" } }));
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {url} with {credential:?}"
            );
            assert!(response.headers().contains_key("www-authenticate"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    // Unknown tenant and unknown (unregistered) controller with a target token: 401, no auto-registration.
    let other_tenant = SimDevice {
        tenant: "other".into(),
        ..a.clone()
    };
    assert_eq!(
        other_tenant
            .get(&other_tenant.url())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let ghost = SimDevice::new(&server.base, "ghost", &token_a);
    assert_eq!(
        ghost.get(&ghost.url()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        mgmt.get("/rest/v1/targets/ghost").await.0,
        StatusCode::NOT_FOUND
    );

    // dev-a, correctly authenticated, asking for dev-b's action and module: 404 like a missing id.
    for url in [
        format!("{}/deploymentBase/{action_b}", a.url()),
        format!("{}/cancelAction/{action_b}", a.url()),
        format!("{}/installedBase/{action_b}", a.url()),
        format!("{}/softwaremodules/{module_b}/artifacts", a.url()),
        format!("{}/softwaremodules/{module_b}/artifacts/b.swu", a.url()),
        format!(
            "{}/softwaremodules/{module_b}/artifacts/b.swu.MD5SUM",
            a.url()
        ),
        format!("{}/deploymentBase/999999", a.url()),
    ] {
        let response = a.get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
    }
    for url in [
        format!("{}/deploymentBase/{action_b}/feedback", a.url()),
        format!("{}/cancelAction/{action_b}/feedback", a.url()),
    ] {
        assert_eq!(
            a.post_json(&url, &closed).await.unwrap(),
            StatusCode::NOT_FOUND,
            "{url}"
        );
    }
    // dev-b's URL space with dev-a's token: 401.
    let b_as_a = SimDevice::new(&server.base, "dev-b", &token_a);
    assert_eq!(
        b_as_a
            .post_json(
                &format!("{}/deploymentBase/{action_b}/feedback", b_as_a.url()),
                &closed
            )
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED
    );
    // dev-a's own poll never mentions dev-b's action.
    let poll = a.poll().await.unwrap();
    assert!(!poll
        .to_string()
        .contains(&format!("/deploymentBase/{action_b}")));

    let after = snapshot(&mgmt, &["dev-a", "dev-b"]).await;
    // The legitimate poll above may have recorded nothing but poll time; the deployments and
    // histories are untouched.
    assert_eq!(before, after);
    server.stop().await;
}

#[tokio::test]
async fn management_roles_are_enforced() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    let (set, module) = admin
        .release("fw", "1", "a.swu", random_bytes(100, 3))
        .await;
    let device_token = admin.device("dev1", &["line-1"]).await;
    let viewer_token = admin.token("v", "viewer").await;
    let operator_token = admin.token("o", "operator").await;
    let viewer = admin.with_token(Some(&viewer_token));
    let operator = admin.with_token(Some(&operator_token));
    let anonymous = admin.with_token(None);
    let wrong = admin.with_token(Some("not-a-token"));
    assert_eq!(
        viewer.ok(Method::GET, "/rest/v1/whoami", None).await["role"],
        "viewer"
    );
    let before = snapshot(&admin, &["dev1"]).await;

    let operator_writes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/rest/v1/targets".into(),
            json!({ "controllerId": "dev2" }),
        ),
        (Method::DELETE, "/rest/v1/targets/dev1".into(), json!(null)),
        (
            Method::PUT,
            "/rest/v1/targets/dev1/tags".into(),
            json!({ "tags": [] }),
        ),
        (
            Method::POST,
            "/rest/v1/targets/dev1/token".into(),
            json!({}),
        ),
        (
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS".into(),
            json!({ "id": set }),
        ),
        (
            Method::POST,
            format!("/rest/v1/distributionsets/{set}/assignedTargets"),
            json!({ "tag": "line-1" }),
        ),
        (
            Method::POST,
            "/rest/v1/softwaremodules".into(),
            json!({ "name": "x", "version": "1" }),
        ),
        (
            Method::POST,
            format!("/rest/v1/softwaremodules/{module}/artifacts?filename=b.swu"),
            json!("bytes"),
        ),
        (
            Method::POST,
            "/rest/v1/distributionsets".into(),
            json!({ "name": "x", "version": "1", "modules": [module] }),
        ),
        (
            Method::POST,
            "/rest/v1/rollouts".into(),
            json!({ "name": "r", "distributionSetId": set, "targets": ["dev1"] }),
        ),
    ];
    let admin_only: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/rest/v1/tokens".into(),
            json!({ "name": "x", "role": "admin" }),
        ),
        (Method::GET, "/rest/v1/tokens".into(), json!(null)),
        (
            Method::POST,
            "/rest/v1/tenants".into(),
            json!({ "name": "t2" }),
        ),
        (
            Method::PUT,
            "/rest/v1/tenants/default/gatewaytoken".into(),
            json!({}),
        ),
    ];
    let body_of = |v: &Value| if v.is_null() { None } else { Some(v.clone()) };
    for (method, path, body) in operator_writes.iter().chain(admin_only.iter()) {
        for client in [&anonymous, &wrong] {
            let (status, error) = client.send(method.clone(), path, body_of(body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(error["error"], "unauthorized");
        }
        let (status, error) = viewer.send(method.clone(), path, body_of(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {path}");
        assert_eq!(error["error"], "forbidden");
    }
    for (method, path, body) in &admin_only {
        let (status, _) = operator.send(method.clone(), path, body_of(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "operator {method} {path}");
    }
    // Reads: anonymous rejected, viewer allowed.
    for path in [
        "/rest/v1/targets",
        "/rest/v1/targets/dev1/actions",
        "/rest/v1/rollouts",
        "/rest/v1/distributionsets",
    ] {
        assert_eq!(anonymous.get(path).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(viewer.get(path).await.0, StatusCode::OK);
    }
    // Nothing changed, and no token was added (the list is admin-only, compare counts: the
    // tenant's viewer and operator; the cross-tenant admin is not one of the tenant's tokens).
    assert_eq!(snapshot(&admin, &["dev1"]).await, before);
    assert_eq!(
        admin.ok(Method::GET, "/rest/v1/tokens", None).await["content"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The operator can do operator things; a revoked token stops working.
    operator
        .ok(
            Method::POST,
            "/rest/v1/targets",
            Some(json!({ "controllerId": "dev2" })),
        )
        .await;
    let tokens = admin.ok(Method::GET, "/rest/v1/tokens", None).await;
    let operator_id = tokens["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "o")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    admin
        .ok(
            Method::DELETE,
            &format!("/rest/v1/tokens/{operator_id}"),
            None,
        )
        .await;
    assert_eq!(
        operator.get("/rest/v1/targets").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Tokens are stored hashed: the database never contains a token in clear.
    let stored = server.database_contents();
    assert!(stored.windows(6).any(|w| w == b"viewer"), "no rows read");
    for secret in [&server.admin, &viewer_token, &operator_token, &device_token] {
        let needle = secret.as_bytes();
        assert!(!stored.windows(needle.len()).any(|w| w == needle));
    }
    server.stop().await;
}
