//! Security boundaries and their records (docs/security.md): tenants (every route of the OpenAPI
//! document, and every dashboard route, walked with another tenant's admin token and dashboard
//! session, is refused and changes nothing), the audit log, secrets. SQLite, and PostgreSQL with KEEL_TEST_DATABASE=postgres.

use crate::common;

use common::browser::Browser;
use common::{random_bytes, Mgmt, SimDevice, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const PASSWORD: &str = "correct horse battery";

/// What tenant `plant-b` holds, made by the cross-tenant admin.
struct PlantB {
    device: String,
    device_token: String,
    module: i64,
    set: i64,
    rollout: i64,
    action: i64,
    token_id: i64,
    user_id: i64,
}

async fn admin_token_of(mgmt: &Mgmt, name: &str) -> (i64, String) {
    let value = mgmt
        .ok(
            Method::POST,
            "/rest/v1/tokens",
            Some(json!({ "name": name, "role": "admin" })),
        )
        .await;
    (
        value["id"].as_i64().unwrap(),
        value["token"].as_str().unwrap().to_string(),
    )
}

/// A management client acting on `tenant` through X-Keel-Tenant.
async fn send_as(
    mgmt: &Mgmt,
    tenant: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = mgmt
        .client
        .request(method, format!("{}{path}", mgmt.base))
        .bearer_auth(mgmt.token.as_deref().unwrap());
    if let Some(tenant) = tenant {
        request = request.header("X-Keel-Tenant", tenant);
    }
    if let Some(body) = body {
        request = match body {
            Value::String(bytes) => request
                .header("Content-Type", "application/octet-stream")
                .body(bytes.clone()),
            json => request.json(json),
        };
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A rollout of `set` to one device, created and waited for until it is ready; its id.
async fn ready_rollout(mgmt: &Mgmt, name: &str, set: i64, device: &str) -> i64 {
    let rollout = mgmt
        .ok(
            Method::POST,
            "/rest/v1/rollouts",
            Some(json!({ "name": name, "distributionSetId": set, "targets": [device] })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    mgmt.wait_rollout(rollout, "rollout ready", |r| r["status"] == "ready")
        .await;
    rollout
}

async fn set_up_plant_b(server: &TestServer, admin: &Mgmt) -> PlantB {
    admin
        .ok(
            Method::POST,
            "/rest/v1/tenants",
            Some(json!({ "name": "plant-b" })),
        )
        .await;
    // plant-b's own admin, as its operators would use it.
    let (token_id, b_admin) = {
        let (status, value) = send_as(
            admin,
            Some("plant-b"),
            Method::POST,
            "/rest/v1/tokens",
            Some(&json!({ "name": "b-admin", "role": "admin" })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{value}");
        (
            value["id"].as_i64().unwrap(),
            value["token"].as_str().unwrap().to_string(),
        )
    };
    let b = admin.with_token(Some(&b_admin));
    let device_token = b.device("b-dev", &["b-tag"]).await;
    let (set, module) = b
        .release("b-os", "1.0", "b.img", random_bytes(4096, 9))
        .await;
    let assigned = b
        .ok(
            Method::POST,
            "/rest/v1/targets/b-dev/assignedDS",
            Some(json!({ "id": set })),
        )
        .await;
    let action = assigned["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no action id in {assigned}"));
    b.device("b-dev-2", &["b-tag"]).await;
    let rollout = ready_rollout(&b, "b-rollout", set, "b-dev-2").await;
    // A dashboard account of plant-b, made by plant-b's admin in the dashboard.
    let mut browser = Browser::new(&server.base);
    let page = browser.login_to("plant-b", &b_admin).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let created = browser.create_user("bob", PASSWORD, "admin").await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let store = server.open_store().await;
    let tenant = store.tenant_by_name("plant-b").await.unwrap().unwrap();
    let user_id = store
        .dashboard_user(tenant.id, "bob")
        .await
        .unwrap()
        .unwrap()
        .id;
    store.close().await;
    PlantB {
        device: "b-dev".into(),
        device_token,
        module,
        set,
        rollout,
        action,
        token_id,
        user_id,
    }
}

/// A value for each path parameter of the OpenAPI document, naming plant-b's objects. A new
/// parameter name fails the walk until it is given one here: no route escapes it.
fn parameter(name: &str, path: &str, b: &PlantB) -> String {
    match name {
        "controllerId" | "controller_id" => b.device.clone(),
        "actionId" | "action_id" => b.action.to_string(),
        "name" | "tenant" => "plant-b".into(),
        "moduleId" | "module_id" => b.module.to_string(),
        "fileName" | "filename" => "b.img".into(),
        "file" => "timestamp.json".into(),
        "id" if path.starts_with("/rest/v1/softwaremodules/") => b.module.to_string(),
        "id" if path.starts_with("/rest/v1/distributionsets/") => b.set.to_string(),
        "id" if path.starts_with("/rest/v1/rollouts/") => b.rollout.to_string(),
        "id" if path.starts_with("/rest/v1/tokens/") => b.token_id.to_string(),
        other => panic!(
            "tenancy walk: give path parameter {other:?} of {path} a value naming plant-b's object"
        ),
    }
}

/// A valid request body for each request schema, so a refusal comes from the tenant check and not
/// from validation. A new schema fails the walk until it is given one here.
fn body(operation: &Value, path: &str, b: &PlantB) -> Option<Value> {
    let content = operation.get("requestBody")?.get("content")?;
    if content.get("application/octet-stream").is_some() {
        return Some(Value::String("firmware bytes".into()));
    }
    let schema = content["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: request body without a schema reference"))
        .rsplit('/')
        .next()
        .unwrap();
    Some(match schema {
        "NewTenant" => json!({ "name": "mallory-tenant" }),
        "TokenValue" => json!({ "token": "mallory-gateway-token" }),
        "NewToken" => json!({ "name": "mallory", "role": "admin" }),
        "NewModule" => json!({ "name": "mallory-os", "version": "6.6.6" }),
        "NewDistributionSet" => {
            json!({ "name": "mallory", "version": "6.6.6", "modules": [b.module] })
        }
        "NewTarget" => json!({ "controllerId": "mallory-dev" }),
        "Tags" => json!({ "tags": ["pwned"] }),
        "AssignToTarget" => json!({ "id": b.set }),
        "AssignToMany" => json!({ "targets": [b.device] }),
        "NewRollout" => {
            json!({ "name": "mallory", "distributionSetId": b.set, "targets": [b.device] })
        }
        "DdiConfigData" => json!({ "data": { "pwned": "yes" } }),
        "DdiFeedback" => {
            json!({ "status": { "execution": "closed", "result": { "finished": "success" } } })
        }
        "TargetToken" | "NewTargetToken" => json!({ "token": "mallory-device-token" }),
        other => {
            panic!("tenancy walk: give request schema {other:?} ({path}) a valid example body")
        }
    })
}

/// Every operation of the OpenAPI document with plant-b's objects filled in:
/// (method, concrete path, template, body).
fn operations(document: &Value, b: &PlantB) -> Vec<(Method, String, String, Option<Value>)> {
    let mut all = Vec::new();
    for (template, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let concrete: Vec<String> = template
                .split('/')
                .map(
                    |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => parameter(name, template, b),
                        None => segment.to_string(),
                    },
                )
                .collect();
            let mut path = concrete.join("/");
            if operation["requestBody"]["content"]
                .get("application/octet-stream")
                .is_some()
            {
                path.push_str("?filename=mallory.img");
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            all.push((method, path, template.clone(), body(operation, template, b)));
        }
    }
    assert!(
        all.len() > 30,
        "the OpenAPI document lists {} operations",
        all.len()
    );
    all
}

/// What must not change: every table but the audit log (which records the attempts), the
/// dashboard sessions (touched on use) and the scheduler's leases.
async fn fleet_state(server: &TestServer) -> BTreeMap<String, Vec<String>> {
    server
        .table_rows(&["audit_log", "dashboard_sessions", "leases"])
        .await
}

fn assert_unchanged(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    for (table, rows) in before {
        assert_eq!(Some(rows), after.get(table), "{what} changed table {table}");
    }
}

#[tokio::test]
async fn every_route_refuses_another_tenants_token_and_session_and_changes_nothing() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    let b = set_up_plant_b(&server, &admin).await;
    // Tenant default's admin token and dashboard account: the attacker.
    let (_, a_admin) = admin_token_of(&admin, "a-admin").await;
    let a = admin.with_token(Some(&a_admin));
    let mut alice = Browser::new(&server.base);
    alice.login(&a_admin).await;
    let created = alice.create_user("alice", PASSWORD, "admin").await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let mut alice = Browser::new(&server.base);
    let ok = alice.login_user("alice", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);

    let document = admin.ok(Method::GET, "/rest/v1/openapi.json", None).await;
    let walk = operations(&document, &b);
    let before = fleet_state(&server).await;

    // 1. X-Keel-Tenant naming plant-b: every management route is 403.
    for (method, path, template, body) in &walk {
        if !template.starts_with("/rest/v1/") || template == "/rest/v1/openapi.json" {
            continue;
        }
        let (status, value) =
            send_as(&a, Some("plant-b"), method.clone(), path, body.as_ref()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} with tenant default's admin token acting on plant-b: {value}"
        );
        // Spelling the tenant differently changes nothing.
        let (status, _) = send_as(&a, Some("PLANT-B"), method.clone(), path, body.as_ref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} (PLANT-B)");
    }

    // 2. The token's own tenant, plant-b's ids: nothing of plant-b is found or shown. (Creating
    //    in its own tenant is its right, so parameterless changes are left out here.)
    for (method, path, template, body) in &walk {
        if !template.starts_with("/rest/v1/") || template == "/rest/v1/openapi.json" {
            continue;
        }
        if !template.contains('{') && method != Method::GET {
            continue;
        }
        let (status, value) = send_as(&a, None, method.clone(), path, body.as_ref()).await;
        let text = value.to_string();
        // (tenant default's audit log records its own admin's attempts, paths included)
        let own_records = template == "/rest/v1/audit";
        for secret in ["b-dev", "b-os", "b-rollout", "b-admin", "plant-b"] {
            if status.is_success() && !own_records {
                assert!(
                    !text.contains(secret),
                    "{method} {path} as tenant default shows plant-b's {secret:?}: {text}"
                );
            }
        }
        if template.contains('{') {
            assert!(
                !status.is_success(),
                "{method} {path} as tenant default reached plant-b's object: {status} {value}"
            );
        }
    }

    // 3. The device API of plant-b with tenant default's management token.
    for (method, path, template, body) in &walk {
        if template.starts_with("/rest/v1/") {
            continue;
        }
        let (status, value) = send_as(&a, None, method.clone(), path, body.as_ref()).await;
        assert!(
            matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "{method} {path} with a management token: {status} {value}"
        );
    }

    // 4. Tenant default's dashboard session on plant-b's objects (every dashboard route that
    //    names an object; the others show the session's own tenant).
    let csrf = alice.get("/ui/fleet").await.csrf();
    let rollout = b.rollout.to_string();
    let pages = [
        format!("/ui/devices/{}", b.device),
        format!("/ui/rollouts/{rollout}"),
        format!("/ui/rollouts/{rollout}/progress"),
    ];
    for page in &pages {
        let got = alice.get(page).await;
        assert_eq!(
            got.status,
            StatusCode::NOT_FOUND,
            "GET {page}: {}",
            got.body
        );
    }
    for listing in [
        "/ui/fleet",
        "/ui/software",
        "/ui/rollouts",
        "/ui/users",
        "/ui/tuf",
    ] {
        let got = alice.get(listing).await;
        assert_eq!(got.status, StatusCode::OK, "GET {listing}");
        for secret in ["b-dev", "b-os", "b-rollout", "bob"] {
            assert!(
                !got.body.contains(secret),
                "{listing} shows plant-b's {secret:?}"
            );
        }
    }
    let forms: Vec<(String, Vec<(&str, String)>)> = vec![
        (format!("/ui/rollouts/{rollout}/start"), vec![]),
        (format!("/ui/rollouts/{rollout}/cancel"), vec![]),
        (format!("/ui/users/{}/delete", b.user_id), vec![]),
        (
            format!("/ui/software/modules/{}/artifacts", b.module),
            vec![("filename", "mallory.img".into())],
        ),
        (
            "/ui/rollouts".into(),
            vec![
                ("name", "mallory".into()),
                ("set", b.set.to_string()),
                ("distributionSetId", b.set.to_string()),
                ("targets", b.device.clone()),
            ],
        ),
    ];
    for (path, fields) in &forms {
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        let got = alice.post_form(path, &all).await;
        assert!(
            got.status.is_client_error(),
            "POST {path} from tenant default's session: {} {}",
            got.status,
            got.body
        );
    }
    // Logging in to plant-b with tenant default's account or token fails.
    let mut mallory = Browser::new(&server.base);
    let refused = mallory.login_user_to("plant-b", "alice", PASSWORD).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let refused = mallory.login_to("plant-b", &a_admin).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let after = fleet_state(&server).await;
    assert_unchanged(&before, &after, "a request from tenant default");

    // plant-b's device still works with its own token.
    let mut device = SimDevice::new(&server.base, &b.device, &b.device_token);
    device.tenant = "plant-b".into();
    assert_eq!(device.get_json(&device.url()).await.0, StatusCode::OK);
    // And the attempts are in the audit log, under the attacker's token and tenant.
    // (refusals are written in the background: wait for them)
    let is_attempt = |r: &Value| {
        r["actor"] == "a-admin"
            && r["action"] == "forbidden: GET /rest/v1/targets/{controller_id}"
            && r["object"] == "/rest/v1/targets/b-dev"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let attempt = loop {
        let all = admin
            .ok(
                Method::GET,
                "/rest/v1/audit?failed=true&limit=500&all=true",
                None,
            )
            .await;
        let records = all["content"].as_array().unwrap().clone();
        if let Some(found) = records.iter().find(|r| is_attempt(r)) {
            break found.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no forbidden attempt by a-admin in the audit log: {records:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let default_id = server_tenant_id(&server, "default").await;
    assert_eq!(attempt["tenantId"], default_id);
    server.stop().await;
}

#[tokio::test]
async fn tokens_accounts_and_tenants_belong_to_one_tenant() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    admin
        .ok(
            Method::POST,
            "/rest/v1/tenants",
            Some(json!({ "name": "plant-b" })),
        )
        .await;
    let whoami = admin.ok(Method::GET, "/rest/v1/whoami", None).await;
    assert_eq!(whoami["crossTenant"], true, "{whoami}");

    // A token made in tenant default acts on default without naming it, and only there.
    let (_, a_admin) = admin_token_of(&admin, "a-admin").await;
    let a = admin.with_token(Some(&a_admin));
    let whoami = a.ok(Method::GET, "/rest/v1/whoami", None).await;
    assert_eq!(
        (whoami["tenant"].as_str(), whoami["crossTenant"].as_bool()),
        (Some("default"), Some(false))
    );
    a.device("a-dev", &[]).await;
    let (status, _) = a
        .post("/rest/v1/tenants", json!({ "name": "plant-c" }))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a tenant admin created a tenant"
    );
    let tenants = a.ok(Method::GET, "/rest/v1/tenants", None).await;
    let names: Vec<&str> = tenants_of(&tenants);
    assert_eq!(
        names,
        ["default"],
        "a tenant admin sees other tenants: {tenants}"
    );
    let (status, _) = send_as(
        &a,
        None,
        Method::PUT,
        "/rest/v1/tenants/plant-b/gatewaytoken",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The same with a tenant that does not exist: 403 too, so existence is not revealed.
    let (status, _) = send_as(
        &a,
        Some("no-such-tenant"),
        Method::GET,
        "/rest/v1/targets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Tokens of default are not listed, nor deletable, in plant-b.
    let b_tokens = send_as(
        &admin,
        Some("plant-b"),
        Method::GET,
        "/rest/v1/tokens",
        None,
    )
    .await
    .1;
    assert!(!b_tokens.to_string().contains("a-admin"), "{b_tokens}");
    // Tenant names are one namespace regardless of case.
    let (status, _) = admin
        .post("/rest/v1/tenants", json!({ "name": "PLANT-B" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    server.stop().await;
}

async fn server_tenant_id(server: &TestServer, name: &str) -> i64 {
    let store = server.open_store().await;
    let id = store.tenant_by_name(name).await.unwrap().unwrap().id;
    store.close().await;
    id
}

fn tenants_of(value: &Value) -> Vec<&str> {
    let list = value.get("content").unwrap_or(value);
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn ddi_tenant_names_are_case_insensitive() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    let token = admin.device("dev-1", &[]).await;
    // SWUpdate configured with hawkBit's usual spelling `-t DEFAULT`.
    let mut device = SimDevice::new(&server.base, "dev-1", &token);
    device.tenant = "DEFAULT".into();
    assert_eq!(device.get_json(&device.url()).await.0, StatusCode::OK);
    device.tenant = "no-such-tenant".into();
    assert_eq!(
        device.get_json(&device.url()).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

async fn audit(mgmt: &Mgmt, query: &str) -> Vec<Value> {
    let value = mgmt
        .ok(Method::GET, &format!("/rest/v1/audit?{query}"), None)
        .await;
    assert_eq!(
        value["size"].as_u64().unwrap() as usize,
        value["content"].as_array().unwrap().len()
    );
    value["content"].as_array().unwrap().clone()
}

fn find<'a>(records: &'a [Value], actor: &str, action: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["actor"] == actor && r["action"].as_str().unwrap().starts_with(action))
        .unwrap_or_else(|| panic!("no audit record {actor:?} {action:?} in {records:#?}"))
}

#[tokio::test]
async fn changes_logins_and_rejected_tokens_are_audited_with_who_where_and_what() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    let (_, ops) = admin_token_of(&admin, "ops").await;
    let ops = admin.with_token(Some(&ops));
    let device_token = ops.device("dev-1", &[]).await;
    let (set, _) = ops
        .release("os", "1.0", "os.img", random_bytes(1000, 3))
        .await;
    // A token replacement (the device takeover of issue 12 would have shown here).
    ops.ok(
        Method::POST,
        "/rest/v1/targets/dev-1/token",
        Some(json!({ "token": "replacement-token-1" })),
    )
    .await;
    let rollout = ready_rollout(&ops, "r1", set, "dev-1").await;
    let canceled = ops
        .ok(
            Method::POST,
            &format!("/rest/v1/rollouts/{rollout}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        canceled["statusReason"], "canceled by token \"ops\"",
        "{canceled}"
    );

    // Refused credentials: a wrong bearer token, a wrong device token, a wrong password.
    let (status, _) = admin
        .with_token(Some("not-a-token"))
        .get("/rest/v1/targets")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong_device = SimDevice::new(&server.base, "dev-1", &device_token);
    assert_eq!(
        wrong_device.get_json(&wrong_device.url()).await.0,
        StatusCode::UNAUTHORIZED,
        "the replaced token still works"
    );
    let mut browser = Browser::new(&server.base);
    let page = browser.login_user("mallory", "guess guess guess").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);

    // Refusals are queued: wait until they are written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let records = loop {
        let records = audit(&admin, "limit=500&all=true").await;
        if records.iter().any(|r| r["action"] == "login")
            && records.iter().any(|r| r["actor"] == "(device)")
            || std::time::Instant::now() > deadline
        {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let default_id = find(&records, "admin", "POST /rest/v1/tokens")["tenantId"].clone();
    assert!(default_id.is_i64());
    for (actor, action) in [
        ("admin", "POST /rest/v1/tokens"),
        ("ops", "POST /rest/v1/targets"),
        ("ops", "POST /rest/v1/softwaremodules/{id}/artifacts"),
        ("ops", "POST /rest/v1/targets/{controller_id}/token"),
        ("ops", "POST /rest/v1/rollouts/{id}/{operation}"),
        ("(no valid token)", "token rejected: GET /rest/v1/targets"),
        ("(device)", "device token rejected"),
        ("user \"mallory\"", "login"),
    ] {
        let record = find(&records, actor, action);
        assert_eq!(record["address"], "127.0.0.1", "{record}");
        assert!(record["at"].as_i64().unwrap() > 0);
        if actor != "(no valid token)" {
            assert_eq!(record["tenantId"], default_id, "{record}");
        }
    }
    let token_change = find(
        &records,
        "ops",
        "POST /rest/v1/targets/{controller_id}/token",
    );
    assert_eq!(token_change["object"], "/rest/v1/targets/dev-1/token");
    assert_eq!(token_change["status"], 200);
    assert_eq!(find(&records, "user \"mallory\"", "login")["status"], 401);
    // Nothing secret is recorded.
    let text = serde_json::to_string(&records).unwrap();
    for secret in [
        "replacement-token-1",
        "guess guess guess",
        "not-a-token",
        device_token.as_str(),
    ] {
        assert!(
            !text.contains(secret),
            "the audit log holds a secret: {secret}"
        );
    }

    // Paging and filters.
    let page = admin
        .ok(Method::GET, "/rest/v1/audit?limit=2&offset=1", None)
        .await;
    assert_eq!(page["size"], 2);
    assert!(page["total"].as_i64().unwrap() >= 8, "{page}");
    let only_ops = audit(&admin, "actor=ops").await;
    assert!(!only_ops.is_empty() && only_ops.iter().all(|r| r["actor"] == "ops"));
    let failed = audit(&admin, "failed=true").await;
    assert!(failed.iter().all(|r| r["status"].as_i64().unwrap() >= 400));
    let logins = audit(&admin, "action=login").await;
    assert!(!logins.is_empty() && logins.iter().all(|r| r["action"] == "login"));
    let (status, body) = admin.get("/rest/v1/audit?limit=100000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A tenant's admin reads its own tenant's log only.
    admin
        .ok(
            Method::POST,
            "/rest/v1/tenants",
            Some(json!({ "name": "plant-b" })),
        )
        .await;
    let (status, value) = send_as(
        &admin,
        Some("plant-b"),
        Method::POST,
        "/rest/v1/tokens",
        Some(&json!({ "name": "b-admin", "role": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let b_admin = admin.with_token(value["token"].as_str());
    let b_records = audit(&b_admin, "limit=500").await;
    assert!(
        b_records.iter().all(|r| r["actor"] != "ops"),
        "{b_records:#?}"
    );
    let (status, _) = b_admin.get("/rest/v1/audit?all=true").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The dashboard shows the tenant's log to admins, filtered like the API.
    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    let page = browser.get("/ui/audit?failed=on").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("device token rejected"), "{}", page.body);
    assert!(
        !page
            .body
            .contains("POST /rest/v1/targets/{controller_id}/token"),
        "failed=on shows a success"
    );
    let page = browser.get("/ui/audit?actor=ops").await;
    assert!(
        page.body.contains("/rest/v1/targets/dev-1/token"),
        "{}",
        page.body
    );
    let (_, viewer) = {
        let value = admin
            .ok(
                Method::POST,
                "/rest/v1/tokens",
                Some(json!({ "name": "v", "role": "viewer" })),
            )
            .await;
        ((), value["token"].as_str().unwrap().to_string())
    };
    let mut viewer_browser = Browser::new(&server.base);
    viewer_browser.login(&viewer).await;
    assert_eq!(
        viewer_browser.get("/ui/audit").await.status,
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

#[test]
fn the_admin_token_is_written_to_a_private_file_and_never_printed() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = env!("CARGO_BIN_EXE_keel-server");
    let mut child = std::process::Command::new(server)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--create-default-tenant",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        printed.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    child.wait().unwrap();
    let file = dir.path().join("admin.token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 32);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let output = format!("{}\n{stderr}", printed.join("\n"));
    assert!(
        !output.contains(&token),
        "the admin token was printed: {output}"
    );
    assert!(output.contains(&file.display().to_string()), "{output}");

    // Cross-tenant credentials come from the command line only, with an explicit scope.
    let run = |args: &[&str]| {
        std::process::Command::new(server)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let no_scope = run(&["create-token", "--name", "ops"]);
    assert!(!no_scope.status.success());
    let unknown = run(&["create-token", "--name", "ops", "--tenant", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("tenant \"nope\" does not exist"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let out = dir.path().join("ops.token");
    let made = run(&[
        "create-token",
        "--name",
        "ops",
        "--cross-tenant",
        "--role",
        "viewer",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let made = std::process::Command::new(server)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["create-user", "--name", "root", "--cross-tenant"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"a long enough password\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}
