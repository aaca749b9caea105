//! The web dashboard over real HTTP: login and session cookie, CSRF, roles (UI and API), HTML
//! escaping of device-controlled values, server-side pagination and filters, upload forwarding.

use crate::common;

use common::browser::Browser;
use common::{random_bytes, Mgmt, SimDevice, TestServer};
use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;

async fn token(mgmt: &Mgmt, role: &str) -> String {
    mgmt.token(&format!("{role}-user"), role).await
}

#[tokio::test]
async fn login_session_cookie_csrf_and_logout() {
    let server = TestServer::start().await;
    let mut browser = Browser::new(&server.base);

    let anonymous = browser.get("/ui/fleet").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location.as_deref(), Some("/ui/login"));

    // The login form's nonce must come back with the matching cookie (login CSRF).
    let form = browser.get("/ui/login").await;
    let nonce = form.csrf();
    let mut stranger = Browser::new(&server.base);
    let forged = stranger
        .post_form(
            "/ui/login",
            &[
                ("csrf", &nonce),
                ("token", &server.admin),
                ("tenant", "default"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.contains_key("keel_session"));

    let wrong = browser.login("not-a-token-at-all").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Unknown token"));

    let ok = browser.login(&server.admin).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let session = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with("keel_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(
        !session.contains(&server.admin),
        "the token itself never goes to the browser"
    );

    let fleet = browser.get("/ui/fleet").await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert!(fleet.body.contains("admin · admin · tenant default"));
    let csp = browser
        .client
        .get(format!("{}/ui/fleet", server.base))
        .header(COOKIE, browser.cookie_header())
        .send()
        .await
        .unwrap();
    let policy = csp.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");

    // Logout needs the session's CSRF token too.
    let refused = browser.post_form("/ui/logout", &[("csrf", "wrong")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let csrf = fleet.csrf();
    let out = browser.post_form("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/ui/fleet").await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

/// Device `dev-1` tagged `lab`, release os 1.0 carrying `image`, rollout `r1` to the tag (not
/// started); returns the rollout id.
async fn lab_rollout(mgmt: &common::Mgmt, image: Vec<u8>) -> i64 {
    mgmt.device("dev-1", &["lab"]).await;
    let (set, _) = mgmt.release("os", "1.0", "os.swu", image).await;
    let rollout = mgmt
        .ok(
            reqwest::Method::POST,
            "/rest/v1/rollouts",
            Some(json!({ "name": "r1", "distributionSetId": set, "tag": "lab" })),
        )
        .await;
    rollout["id"].as_i64().unwrap()
}

#[tokio::test]
async fn viewer_sees_no_rollout_controls_and_is_refused_by_ui_and_api() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let id = lab_rollout(&mgmt, random_bytes(1000, 1)).await;
    let viewer_token = token(&mgmt, "viewer").await;

    let mut viewer = Browser::new(&server.base);
    assert_eq!(
        viewer.login(&viewer_token).await.status,
        StatusCode::SEE_OTHER
    );
    let page = viewer.get(&format!("/ui/rollouts/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("r1"));
    for control in ["op-start", "op-cancel", "op-pause", "op-resume"] {
        assert!(!page.body.contains(control), "viewer sees {control}");
    }
    let list = viewer.get("/ui/rollouts").await;
    assert!(
        !list.body.contains("rollout-form"),
        "viewer sees the create form"
    );
    let software = viewer.get("/ui/software").await;
    assert!(!software.body.contains("upload-form"));

    // Posting anyway (with a valid CSRF token) is refused by the management API's role check.
    let csrf = page.csrf();
    let refused = viewer
        .post_form(&format!("/ui/rollouts/{id}/start"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("role operator required"),
        "{}",
        refused.body
    );
    let refused = viewer
        .post_form(&format!("/ui/rollouts/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (status, _) = mgmt
        .with_token(Some(&viewer_token))
        .post(&format!("/rest/v1/rollouts/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(mgmt.rollout(id).await["status"], "ready");

    // An operator sees the controls; without the CSRF token the form is refused, with it the
    // rollout starts.
    let operator_token = token(&mgmt, "operator").await;
    let mut operator = Browser::new(&server.base);
    operator.login(&operator_token).await;
    let page = operator.get(&format!("/ui/rollouts/{id}")).await;
    assert!(page.body.contains("op-start") && page.body.contains("op-cancel"));
    let no_csrf = operator
        .post_form(&format!("/ui/rollouts/{id}/start"), &[])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let other_session_csrf = viewer.get("/ui/fleet").await.csrf();
    let foreign = operator
        .post_form(
            &format!("/ui/rollouts/{id}/start"),
            &[("csrf", &other_session_csrf)],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let csrf = page.csrf();
    let started = operator
        .post_form(&format!("/ui/rollouts/{id}/start"), &[("csrf", &csrf)])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(mgmt.rollout(id).await["status"], "running");

    // Pause, resume and cancel go through the API too; the page shows only what applies.
    let page = operator.get(&format!("/ui/rollouts/{id}")).await;
    assert!(
        page.body.contains("data-show-when=\"ready\" hidden"),
        "start hidden while running"
    );
    for (operation, status) in [
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "canceled"),
    ] {
        let done = operator
            .post_form(
                &format!("/ui/rollouts/{id}/{operation}"),
                &[("csrf", &csrf)],
            )
            .await;
        assert_eq!(
            done.status,
            StatusCode::SEE_OTHER,
            "{operation}: {}",
            done.body
        );
        assert_eq!(
            mgmt.rollout(id).await["status"],
            status,
            "after {operation}"
        );
    }
    // The API's conflict answer reaches the user.
    let again = operator
        .post_form(&format!("/ui/rollouts/{id}/start"), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .body
            .contains("cannot start a rollout that is canceled"),
        "{}",
        again.body
    );

    // Deleting a token ends its sessions at once.
    let tokens = mgmt.ok(reqwest::Method::GET, "/rest/v1/tokens", None).await;
    let viewer_id = tokens["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    mgmt.ok(
        reqwest::Method::DELETE,
        &format!("/rest/v1/tokens/{viewer_id}"),
        None,
    )
    .await;
    assert_eq!(viewer.get("/ui/fleet").await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn device_controlled_values_are_escaped() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    // Controller ids may not contain '/', so the hostile id is an element without a closing tag.
    let hostile = "<svg onload=alert('id')>";
    let token = mgmt.device(hostile, &["<b>tag</b>"]).await;
    let device = SimDevice::new(&server.base, hostile, &token);
    device.poll().await.unwrap();
    let status = device
        .client
        .put(format!(
            "{}/configData",
            device.url().replace(hostile, &urlencode(hostile))
        ))
        .header("Authorization", &device.auth)
        .json(&json!({ "mode": "merge", "data": {
            "keel.slot": "A",
            "keel.slot.rootfs.version": "<img src=x onerror=alert(1)>",
            "note\"><script>": "x'\"&"
        }}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);

    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    let fleet = browser.get("/ui/fleet").await;
    assert!(!fleet.body.contains("<svg"), "{}", fleet.body);
    assert!(fleet
        .body
        .contains("&lt;svg onload=alert(&#39;id&#39;)&gt;"));
    let page = browser
        .get(&format!("/ui/devices/{}", urlencode(hostile)))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for raw in ["<svg", "<script>", "<img src=x", "<b>tag</b>", "note\">"] {
        assert!(!page.body.contains(raw), "unescaped {raw:?} in device page");
    }
    assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.body.contains("x&#39;&quot;&amp;"));
    // The slot attribute appears in the slots table.
    assert!(page.body.contains("id=\"slots\""));
    server.stop().await;
}

/// The Slots card reads the attribute names keel-agent really sends: the attributes come from the
/// agent's own `slot_attributes` on a simulated device (booted slot A, factory image hashed once).
#[tokio::test]
async fn device_page_shows_the_slots_a_real_agent_reports() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let token = mgmt.device("press-07", &[]).await;
    let pki = common::pki();
    let factory = common::image(3, 40_000);
    let sim = keel_sim::SimDevice::new(keel_sim::DeviceSpec {
        loader: keel_sim::Loader::Ebg,
        targets: vec![("rootfs".into(), 64 * 1024)],
        factory: BTreeMap::from([("rootfs".to_string(), factory.clone())]),
        trusted_certs: pki.cert.clone(),
        aes_key: None,
        hardware_revision: None,
        detect: keel_agent::config::Detect::Auto,
    })
    .unwrap();
    let mut agent = sim.agent().unwrap();
    agent
        .config
        .factory_image_sizes
        .insert("rootfs".into(), factory.len() as u64);
    let attributes = keel_agent::ddi::slot_attributes(&agent, keel_agent::SlotId::A).unwrap();
    let sha256 = keel_delta::hex(&keel_delta::sha256(&factory));
    assert_eq!(
        attributes.get("keel.slot.rootfs.sha256"),
        Some(&sha256),
        "{attributes:?}"
    );

    let device = SimDevice::new(&server.base, "press-07", &token);
    device.poll().await.unwrap();
    let status = device
        .client
        .put(format!("{}/configData", device.url()))
        .header("Authorization", &device.auth)
        .json(&json!({ "mode": "merge", "data": attributes }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);

    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    let page = browser.get("/ui/devices/press-07").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let card = &page.body[page.body.find("<h2>Slots</h2>").unwrap()..];
    let card = &card[..card.find("</div>").unwrap()];
    assert!(!card.contains("reports no"), "{card}");
    assert!(card.contains("Booted slot <b>A</b>"), "{card}");
    assert!(
        card.contains("<td>rootfs</td>") && card.contains(&format!("sha256: <b>{sha256}</b>")),
        "{card}"
    );
    assert!(
        card.contains(&format!("size: <b>{}</b>", factory.len())),
        "{card}"
    );
    server.stop().await;
}

use keel_tuf::store::percent_encode as urlencode;

/// Count of `<tr>` rows in the device table body.
fn device_rows(body: &str) -> usize {
    let start = body.find("<table class=\"list\" id=\"devices\">").unwrap();
    let table = &body[start..];
    let end = table.find("</table>").unwrap();
    table[..end]
        .matches("<tr><td><a href=\"/ui/devices/")
        .count()
}

#[tokio::test]
async fn fleet_list_is_paginated_and_filtered_on_the_server() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let mut tokens = Vec::new();
    for i in 0..120 {
        let tags: &[&str] = if i % 4 == 0 { &["north"] } else { &["south"] };
        tokens.push(mgmt.device(&format!("dev-{i:03}"), tags).await);
    }
    // dev-007 reports attributes; dev-005 gets an action (pending).
    let device = SimDevice::new(&server.base, "dev-007", &tokens[7]);
    let status = device
        .client
        .put(format!("{}/configData", device.url()))
        .header("Authorization", &device.auth)
        .json(&json!({ "data": { "hw": "rev-c", "slot.b.version": "2.1" } }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let (set, _) = mgmt
        .release("os", "2.0", "os.swu", random_bytes(500, 2))
        .await;
    mgmt.ok(
        reqwest::Method::POST,
        "/rest/v1/targets/dev-005/assignedDS",
        Some(json!({ "id": set })),
    )
    .await;

    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    let first = browser.get("/ui/fleet").await;
    assert_eq!(device_rows(&first.body), 50);
    assert!(first.body.contains("Devices 1–50 of 120"), "{}", first.body);
    assert!(first.body.contains("id=\"next-page\""));
    assert!(first.body.contains("id=\"device-total\">120<"));
    let third = browser.get("/ui/fleet?page=3").await;
    assert_eq!(device_rows(&third.body), 20);
    assert!(third.body.contains("Devices 101–120 of 120"));
    assert!(third.body.contains("dev-119") && !third.body.contains("dev-099<"));
    assert!(!third.body.contains("id=\"next-page\""));

    let north = browser.get("/ui/fleet?tag=north").await;
    assert!(north.body.contains("of 30"), "{}", north.body);
    let search = browser.get("/ui/fleet?q=dev-01").await;
    assert!(
        search.body.contains("of 10<") || search.body.contains("of 10 "),
        "{}",
        search.body
    );
    assert_eq!(device_rows(&search.body), 10);
    // LIKE wildcards in the search are literal.
    let wildcard = browser.get("/ui/fleet?q=dev_%25").await;
    assert!(wildcard.body.contains("of 0"));
    let attr = browser.get("/ui/fleet?attr=hw%3Drev-c").await;
    assert_eq!(device_rows(&attr.body), 1);
    assert!(attr.body.contains("dev-007"));
    let pending = browser.get("/ui/fleet?state=pending").await;
    assert_eq!(device_rows(&pending.body), 1);
    assert!(pending.body.contains("dev-005"));
    // Filters survive paging links.
    let south = browser.get("/ui/fleet?tag=south&page=1").await;
    assert!(south.body.contains("of 90"));
    assert!(
        south
            .body
            .contains("href=\"/ui/fleet?page=2&amp;tag=south\""),
        "{}",
        south.body
    );
    server.stop().await;
}

#[tokio::test]
async fn upload_through_the_dashboard_needs_csrf_and_reaches_the_artifact_store() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    let page = browser.get("/ui/software").await;
    let csrf = page.csrf();
    let created = browser
        .post_form(
            "/ui/software/modules",
            &[
                ("csrf", &csrf),
                ("name", "app"),
                ("version", "3.1"),
                ("type", "os"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let modules = mgmt
        .ok(reqwest::Method::GET, "/rest/v1/softwaremodules", None)
        .await;
    let module_id = modules["content"][0]["id"].as_i64().unwrap();
    let bytes = random_bytes(200_000, 9);
    let upload = |csrf: Option<String>| {
        let mut request = browser
            .client
            .post(format!(
                "{}/ui/software/modules/{module_id}/artifacts?filename=app.swu",
                server.base
            ))
            .header(COOKIE, browser.cookie_header())
            .body(bytes.clone());
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send()
    };
    assert_eq!(upload(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    let response = upload(Some(csrf.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let artifact: serde_json::Value = response.json().await.unwrap();
    assert_eq!(artifact["size"], 200_000);
    let listed = mgmt
        .ok(
            reqwest::Method::GET,
            &format!("/rest/v1/softwaremodules/{module_id}/artifacts"),
            None,
        )
        .await;
    assert_eq!(listed["content"][0]["filename"], "app.swu");
    // The API's own validation answers through the dashboard too.
    let duplicate = upload(Some(csrf.clone())).await.unwrap();
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    let set = browser
        .post_form(
            "/ui/software/sets",
            &[
                ("csrf", &csrf),
                ("name", "app"),
                ("version", "3.1"),
                ("module", &module_id.to_string()),
            ],
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
    let page = browser.get("/ui/software").await;
    assert!(page.body.contains("app.swu"));
    assert!(
        page.body
            .contains("<td>app</td><td>3.1</td><td>app 3.1</td>"),
        "{}",
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn tuf_page_shows_each_roles_version_and_expiry() {
    use keel_testkit::tuf::{TufRoot, DAY};
    let server = TestServer::start_with(|config| {
        // The offline part of `keel tuf init`: a root (expiring in 3 days, so it is flagged) and
        // the online key the server signs with.
        let repo = config.data_dir.join("tuf/default");
        let ceremony = TufRoot::single();
        ceremony.create(&repo, keel_tuf::time::system_now() + 3 * DAY);
        let online = &ceremony.online;
        std::fs::write(repo.join("online.pem"), online.to_pkcs8_pem().unwrap()).unwrap();
    })
    .await;
    let mut browser = Browser::new(&server.base);
    browser.login(&server.admin).await;
    // An upload publishes targets, bins, snapshot and timestamp.
    server
        .mgmt()
        .release("os", "1.0", "os.swu", random_bytes(100, 3))
        .await;
    let page = browser.get("/ui/tuf").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"tuf-roles\""), "{}", page.body);
    let row = |role: &str| {
        let marker = format!("data-role=\"{role}\"");
        let at = page
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {role} row: {}", page.body));
        let start = page.body[..at].rfind("<tr").unwrap();
        let end = at + page.body[at..].find("</tr>").unwrap();
        page.body[start..end].to_string()
    };
    let root = row("root");
    assert!(root.contains("tuf-expiring"), "{root}");
    assert!(root.contains("<td>1</td>"), "{root}");
    for role in ["timestamp", "snapshot", "targets"] {
        let text = row(role);
        assert!(text.contains("tuf-ok"), "{text}");
        assert!(text.contains(" UTC</td>"), "{text}");
    }
    assert!(page.body.contains("delegated bins"), "{}", page.body);

    // A tenant without a repository says so.
    let other = TestServer::start().await;
    let mut browser = Browser::new(&other.base);
    browser.login(&other.admin).await;
    assert!(browser
        .get("/ui/tuf")
        .await
        .body
        .contains("id=\"tuf-disabled\""));
    other.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn password_accounts_are_argon2_hashed_and_act_with_their_role() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let id = lab_rollout(&mgmt, random_bytes(100, 4)).await;

    // Only admins manage accounts.
    let operator_token = token(&mgmt, "operator").await;
    let mut operator = Browser::new(&server.base);
    operator.login(&operator_token).await;
    assert_eq!(
        operator.get("/ui/users").await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = operator.get("/ui/fleet").await.csrf();
    let refused = operator
        .post_form(
            "/ui/users",
            &[
                ("csrf", &csrf),
                ("user", "mallory"),
                ("password", "long enough password"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = Browser::new(&server.base);
    admin.login(&server.admin).await;
    let page = admin.get("/ui/users").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let short = admin
        .post_form(
            "/ui/users",
            &[
                ("csrf", &csrf),
                ("user", "alice"),
                ("password", "short"),
                ("role", "operator"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    for (user, role) in [("alice", "operator"), ("victor", "viewer")] {
        let created = admin
            .post_form(
                "/ui/users",
                &[
                    ("csrf", &csrf),
                    ("user", user),
                    ("password", "correct horse battery"),
                    ("role", role),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    }
    let store = server.open_store().await;
    let default = store.tenant_by_name("default").await.unwrap().unwrap();
    let account = store
        .dashboard_user(default.id, "alice")
        .await
        .unwrap()
        .unwrap();
    let (hash, role) = (account.password_hash, account.role);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    assert_eq!(role, "operator");

    let mut alice = Browser::new(&server.base);
    let wrong = alice.login_user("alice", "wrong password!!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown = alice.login_user("nobody", "correct horse battery").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Wrong user or password")
            && unknown.body.contains("Wrong user or password")
    );
    let ok = alice.login_user("alice", "correct horse battery").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);

    // Alice acts as an operator through the management API with a session token of her role.
    let page = alice.get(&format!("/ui/rollouts/{id}")).await;
    assert!(page.body.contains("alice · operator"), "{}", page.body);
    assert!(page.body.contains("op-start"));
    let tokens = mgmt.ok(reqwest::Method::GET, "/rest/v1/tokens", None).await;
    let session_tokens: Vec<_> = tokens["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "dashboard-session:alice")
        .collect();
    assert_eq!(session_tokens.len(), 1);
    assert_eq!(session_tokens[0]["role"], "operator");

    // Victor, a viewer account, is refused by the API.
    let mut victor = Browser::new(&server.base);
    assert_eq!(
        victor
            .login_user("victor", "correct horse battery")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let victor_page = victor.get(&format!("/ui/rollouts/{id}")).await;
    assert!(!victor_page.body.contains("op-start"));
    let refused = victor
        .post_form(
            &format!("/ui/rollouts/{id}/start"),
            &[("csrf", &victor_page.csrf())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let started = alice
        .post_form(
            &format!("/ui/rollouts/{id}/start"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(mgmt.rollout(id).await["status"], "running");

    // Logout deletes the session token.
    let out = alice
        .post_form("/ui/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let tokens = mgmt.ok(reqwest::Method::GET, "/rest/v1/tokens", None).await;
    assert!(
        !tokens.to_string().contains("dashboard-session:alice"),
        "{tokens}"
    );

    // Deleting an account ends its live sessions.
    let users = admin.get("/ui/users").await;
    let marker = "action=\"/ui/users/";
    let victor_row = users.body.find("<td>victor</td>").unwrap();
    let at = victor_row + users.body[victor_row..].find(marker).unwrap() + marker.len();
    let victor_id: String = users.body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let deleted = admin
        .post_form(&format!("/ui/users/{victor_id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(victor.get("/ui/fleet").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        victor
            .login_user("victor", "correct horse battery")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    store.close().await;
    server.stop().await;
}
