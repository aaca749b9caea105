//! The dashboard's pages and form handlers.

use super::html::{self, ago, badge, esc, time, url_part};
use super::{
    api_failure, call_api, cookie, equal_secret, error_page, internal, session_cookie, Ctx,
    FormFields, Sessions, LOGIN_COOKIE, SESSION_COOKIE, SESSION_IDLE,
};
use crate::audit::ClientAddr;
use crate::auth;
use crate::store::{
    now_ms, AttributeFilter, DeviceFilter, GroupCounts, Page, RolloutStatus, StateCount,
    UpdateStatus, VersionCount,
};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use keel_formats::names::attributes as ddi_attributes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Devices per page of the fleet list.
pub const PAGE_SIZE: i64 = 50;
/// Actions shown on a device page (newest first).
const DEVICE_ACTIONS: i64 = 20;
/// Failed devices listed per rollout group.
const FAILED_LISTED: i64 = 50;

type AppState_ = State<Arc<AppState>>;

pub(super) fn render(ctx: &Ctx, title: &str, active: &str, body: &str) -> Response {
    Html(html::page(title, active, Some(&ctx.viewer()), body)).into_response()
}

pub(super) fn db<T>(result: Result<T, sqlx::Error>) -> Result<T, Response> {
    result.map_err(|e| internal(e.to_string()))
}

fn csrf_field(ctx: &Ctx) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&ctx.csrf)
    )
}

// ---------- login ----------

fn login_page(nonce: &str, message: Option<&str>, status: StatusCode) -> Response {
    let mut body = String::from("<section class=\"login\"><h1>Log in to keel</h1>");
    if let Some(message) = message {
        let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(message));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/login\" id=\"login-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{nonce}\">\
         <label>Management API token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label>\
         <p class=\"hint\">or a dashboard account:</p>\
         <label>User <input type=\"text\" name=\"user\" id=\"user\" autocomplete=\"username\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\"></label>\
         <label>Tenant <input type=\"text\" name=\"tenant\" value=\"default\" required></label>\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">Tokens are created with <code>POST /rest/v1/tokens</code> (role viewer, operator or admin); \
         the first admin token is in <code>DATA_DIR/admin.token</code>. Admins create accounts under Users.</p></section>",
        nonce = esc(nonce)
    );
    let mut response = (status, Html(html::page("Log in", "", None, &body))).into_response();
    // Login CSRF: the form's nonce must match this cookie, which other sites cannot set or send.
    if let Ok(value) =
        format!("{LOGIN_COOKIE}={nonce}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=3600").parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_form() -> Response {
    login_page(&auth::generate_token(), None, StatusCode::OK)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes): the OWASP minimum for argon2id.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// A hash to verify against for unknown users, so they take as long as wrong passwords.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("keel dashboard: no such user").unwrap_or_default())
}

/// Checks a user's password off the async threads; `Some(role)` if it matches.
async fn password_login(
    state: &AppState,
    tenant_id: i64,
    user: &str,
    password: &str,
) -> Result<Option<String>, Response> {
    let account = db(state.store.dashboard_user(tenant_id, user).await)?;
    let password = password.to_string();
    let (stored, role) = match account {
        Some(account) => (account.password_hash, Some(account.role)),
        None => (dummy_hash().to_string(), None),
    };
    // At most a few argon2 verifications at a time, on reused memory (crate::throttle).
    let matches = crate::throttle::verify_password(&password, &stored)
        .await
        .map_err(|_| {
            login_refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy checking other logins; please try again in a moment.",
                1,
            )
        })?;
    Ok(role.filter(|_| matches))
}

/// The login form again with `status` and `Retry-After`.
fn login_refused(status: StatusCode, message: &str, retry_after_secs: u64) -> Response {
    let mut response = login_page(&auth::generate_token(), Some(message), status);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after_secs.into());
    response
}

pub async fn login(
    State(state): AppState_,
    Extension(sessions): Extension<Arc<Sessions>>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormFields::parse(&body);
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !equal_secret(&nonce, form.get("csrf").unwrap_or("")) {
        return login_page(
            &auth::generate_token(),
            Some("The login form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.text("token");
    let user = form.text("user");
    let password = form.get("password").unwrap_or("").to_string();
    let tenant_name = form.text("tenant");
    // Every failed login is audited with the account it tried (never the secret).
    let actor = if token.is_empty() {
        format!("user {user:?}")
    } else {
        "(token login)".to_string()
    };
    let audit = |tenant_id: Option<i64>, status: StatusCode, detail: &str| {
        let mut record = crate::audit::entry(
            tenant_id,
            actor.clone(),
            "login",
            format!("tenant {tenant_name:?}"),
            status,
            address.clone(),
        );
        record.detail = Some(detail.to_string());
        record
    };
    let retry = |message: &str| {
        login_page(
            &auth::generate_token(),
            Some(message),
            StatusCode::UNAUTHORIZED,
        )
    };
    // 429 before any database work or password hashing while throttled (crate::throttle).
    let attempt = if token.is_empty() && !user.is_empty() {
        crate::throttle::Attempt::password(&user)
    } else {
        crate::throttle::Attempt::token()
    };
    let attempt = match attempt {
        Ok(attempt) => attempt,
        Err(throttled) => {
            let secs = throttled.retry_after_secs();
            let message = format!(
                "Too many failed logins for this account or from this address. Try again in {secs} seconds."
            );
            return login_refused(StatusCode::TOO_MANY_REQUESTS, &message, secs);
        }
    };
    let tenant = match state.store.tenant_by_name(&tenant_name).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            state
                .audit
                .record_later(audit(None, StatusCode::UNAUTHORIZED, "no such tenant"));
            return retry("No such tenant.");
        }
        Err(e) => return internal(e.to_string()),
    };
    let (token, minted, who) = if !token.is_empty() {
        match state
            .store
            .api_token_identity(&auth::hash_token(&token))
            .await
        {
            // A token logs in to its own tenant only (a cross-tenant token to any).
            Ok(Some(identity)) if identity.tenant_id.is_none_or(|own| own == tenant.id) => {
                attempt.succeeded();
                (token, None, format!("token {:?}", identity.name))
            }
            Ok(Some(_)) | Ok(None) => {
                state.audit.record_later(audit(
                    Some(tenant.id),
                    StatusCode::UNAUTHORIZED,
                    "unknown token, or a token of another tenant",
                ));
                return retry("Unknown token for this tenant.");
            }
            Err(e) => return internal(e.to_string()),
        }
    } else if !user.is_empty() {
        let role = match password_login(&state, tenant.id, &user, &password).await {
            Ok(Some(role)) => {
                attempt.succeeded();
                role
            }
            Ok(None) => {
                state.audit.record_later(audit(
                    Some(tenant.id),
                    StatusCode::UNAUTHORIZED,
                    "wrong user or password",
                ));
                return retry("Wrong user or password.");
            }
            Err(response) => {
                // Busy or a database error: not the client's failure.
                attempt.abandon();
                return response;
            }
        };
        // A session token with the user's role, bound to the tenant logged in to: the management
        // API checks it like any other. It is created with the session (Sessions::create).
        let name = format!("{}{user}", crate::store::DASHBOARD_SESSION_TOKEN_PREFIX);
        (
            auth::generate_token(),
            Some((name, role)),
            format!("user {user:?}"),
        )
    } else {
        return retry("Enter a management API token, or a user and password.");
    };
    let id = match sessions.create(&state.store, token, minted, &tenant).await {
        Ok(id) => id,
        Err(e) => return internal(e.to_string()),
    };
    let mut record = audit(Some(tenant.id), StatusCode::OK, "logged in");
    record.actor = who;
    state.audit.record(record).await;
    let mut response = Redirect::to("/ui/fleet").into_response();
    let headers = response.headers_mut();
    if let Ok(value) = session_cookie(&id, SESSION_IDLE.as_secs()).parse() {
        headers.append(header::SET_COOKIE, value);
    }
    if let Ok(value) =
        format!("{LOGIN_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0").parse()
    {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

/// Records a dashboard-only change (one the management API does not see) made by `ctx`.
async fn audit_change(state: &AppState, ctx: &Ctx, action: &str, object: String) {
    let record = crate::audit::entry(
        Some(ctx.tenant.id),
        ctx.name.clone(),
        action,
        object,
        StatusCode::OK,
        ctx.address.clone(),
    );
    if !state.audit.record(record).await {
        tracing::error!("audit log: could not record {action} by {}", ctx.name);
    }
}

pub async fn logout(
    State(state): AppState_,
    Extension(sessions): Extension<Arc<Sessions>>,
    ctx: Ctx,
    body: Bytes,
) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx.check_csrf(form.get("csrf")) {
        return response;
    }
    audit_change(
        &state,
        &ctx,
        "logout",
        format!("tenant {:?}", ctx.tenant.name),
    )
    .await;
    match sessions.remove(&state.store, &ctx.session_id).await {
        Ok(Some(minted_hash)) => {
            if let Err(e) = state.store.delete_api_token_by_hash(&minted_hash).await {
                return internal(e.to_string());
            }
        }
        Ok(None) => {}
        Err(e) => return internal(e.to_string()),
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) =
        format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0").parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

// ---------- dashboard accounts (admin) ----------

fn admin_only(ctx: &Ctx) -> Result<(), Response> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(error_page(
            Some(ctx),
            StatusCode::FORBIDDEN,
            &format!("role admin required, you have {}", ctx.role.as_str()),
        ))
    }
}

pub async fn users(State(state): AppState_, ctx: Ctx) -> Response {
    if let Err(response) = admin_only(&ctx) {
        return response;
    }
    let accounts = match db(state.store.dashboard_users(ctx.tenant.id).await) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    let mut body = String::from(
        "<h1>Dashboard users of this tenant</h1><table class=\"list\" id=\"users\"><thead><tr><th>User</th><th>Role</th>\
         <th>Created</th><th></th></tr></thead><tbody>",
    );
    for account in &accounts {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/ui/users/{}/delete\">{}\
             <button type=\"submit\" class=\"op-cancel\">Delete</button></form></td></tr>",
            esc(&account.name),
            esc(&account.role),
            esc(&time(account.created_at)),
            account.id,
            csrf_field(&ctx)
        );
    }
    if accounts.is_empty() {
        body.push_str(
            "<tr><td colspan=\"4\">No accounts yet: everyone logs in with a token.</td></tr>",
        );
    }
    let _ = write!(
        body,
        "</tbody></table><form method=\"post\" action=\"/ui/users\" id=\"user-form\" class=\"box\"><h3>New user</h3>{}\
         <label>User <input name=\"user\" required maxlength=\"64\"></label>\
         <label>Password (at least 12 characters) <input type=\"password\" name=\"password\" required minlength=\"12\" autocomplete=\"new-password\"></label>\
         <label>Role <select name=\"role\"><option>viewer</option><option>operator</option><option>admin</option></select></label>\
         <button type=\"submit\">Create user</button></form>",
        csrf_field(&ctx)
    );
    render(&ctx, "Users", "users", &body)
}

pub async fn create_user(State(state): AppState_, ctx: Ctx, body: Bytes) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx
        .check_csrf(form.get("csrf"))
        .and_then(|()| admin_only(&ctx))
    {
        return response;
    }
    let user = form.text("user");
    let password = form.get("password").unwrap_or("").to_string();
    let role = form.text("role");
    if user.is_empty() || user.len() > 64 || user.chars().any(|c| c.is_control()) {
        return error_page(
            Some(&ctx),
            StatusCode::BAD_REQUEST,
            "user: 1..64 printable characters",
        );
    }
    if password.chars().count() < 12 || password.len() > 1024 {
        return error_page(
            Some(&ctx),
            StatusCode::BAD_REQUEST,
            "password: 12..1024 characters",
        );
    }
    if auth::Role::parse(&role).is_none() {
        return error_page(
            Some(&ctx),
            StatusCode::BAD_REQUEST,
            "role: viewer, operator or admin",
        );
    }
    let hash = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e.to_string()),
    };
    match state
        .store
        .create_dashboard_user(Some(ctx.tenant.id), &user, &hash, &role)
        .await
    {
        Ok(_) => {
            audit_change(
                &state,
                &ctx,
                "dashboard user created",
                format!("user {user:?} ({role})"),
            )
            .await;
            Redirect::to("/ui/users").into_response()
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            error_page(Some(&ctx), StatusCode::CONFLICT, "that user already exists")
        }
        Err(e) => internal(e.to_string()),
    }
}

pub async fn delete_user(
    State(state): AppState_,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx
        .check_csrf(form.get("csrf"))
        .and_then(|()| admin_only(&ctx))
    {
        return response;
    }
    match state.store.delete_dashboard_user(ctx.tenant.id, id).await {
        Ok(Some(user)) => {
            audit_change(
                &state,
                &ctx,
                "dashboard user deleted",
                format!("user {user:?}"),
            )
            .await;
            Redirect::to("/ui/users").into_response()
        }
        Ok(None) => error_page(Some(&ctx), StatusCode::NOT_FOUND, "No such user."),
        Err(e) => internal(e.to_string()),
    }
}

// ---------- fleet ----------

pub(super) fn query_fields(query: Option<String>) -> FormFields {
    FormFields::parse(query.unwrap_or_default().as_bytes())
}

pub async fn fleet(State(state): AppState_, ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    match fleet_page(&state, &ctx, query_fields(query)).await {
        Ok(response) | Err(response) => response,
    }
}

async fn fleet_page(state: &AppState, ctx: &Ctx, query: FormFields) -> Result<Response, Response> {
    let now = now_ms();
    let attribute_text = query.text("attr");
    let filter = DeviceFilter {
        search: query.text("q"),
        tag: query.text("tag"),
        attribute: attribute_text
            .split_once('=')
            .map(|(k, v)| AttributeFilter {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }),
        state: query
            .text("state")
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .collect(),
    };
    let page: i64 = query
        .text("page")
        .parse::<i64>()
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    // The overview's counts and the page's rows are independent reads: run them side by side.
    let (counts, Page { rows, total }) = db(tokio::try_join!(
        state.store.fleet_counts(ctx.tenant.id, now),
        state
            .store
            .device_page(ctx.tenant.id, &filter, PAGE_SIZE, (page - 1) * PAGE_SIZE),
    ))?;

    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<h1>Fleet</h1><section class=\"cards\">");
    let _ = write!(
        body,
        "<div class=\"card\"><h2>Devices</h2><p class=\"big\" id=\"device-total\">{}</p>\
         <p>seen in the last hour: {}<br>in the last day: {}<br>never seen: {}</p></div>",
        counts.total, counts.seen_last_hour, counts.seen_last_day, counts.never_seen
    );
    body.push_str("<div class=\"card\"><h2>By state</h2><ul class=\"counts\" id=\"by-state\">");
    for StateCount { state: name, count } in &counts.by_state {
        let _ = write!(
            body,
            "<li><a href=\"/ui/fleet?state={}\">{}</a> <b>{count}</b></li>",
            url_part(name.as_str()),
            badge(name.as_str())
        );
    }
    body.push_str("</ul></div><div class=\"card\"><h2>By installed version</h2><ul class=\"counts\" id=\"by-version\">");
    for VersionCount { installed, count } in counts.by_version.iter().take(12) {
        let label = installed.as_deref().unwrap_or("nothing installed by keel");
        let _ = write!(body, "<li>{} <b>{count}</b></li>", esc(label));
    }
    if counts.by_version.len() > 12 {
        let _ = write!(
            body,
            "<li>… {} more versions</li>",
            counts.by_version.len() - 12
        );
    }
    body.push_str("</ul></div></section>");

    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/fleet\" class=\"filters\" id=\"filters\">\
         <input type=\"search\" name=\"q\" placeholder=\"controller id or name\" value=\"{}\">\
         <input type=\"text\" name=\"tag\" placeholder=\"tag\" value=\"{}\">\
         <input type=\"text\" name=\"attr\" placeholder=\"attribute=value\" value=\"{}\">\
         <select name=\"state\"><option value=\"\">any state</option>",
        esc(&filter.search),
        esc(&filter.tag),
        esc(&attribute_text)
    );
    for name in UpdateStatus::ALL {
        let selected = if filter.state == name.as_str() {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option value=\"{name}\"{selected}>{name}</option>");
    }
    body.push_str("</select><button type=\"submit\">Filter</button></form>");

    let first = if total == 0 {
        0
    } else {
        (page - 1) * PAGE_SIZE + 1
    };
    let last = ((page - 1) * PAGE_SIZE + rows.len() as i64).max(first);
    let _ = write!(
        body,
        "<p class=\"paging\" id=\"paging\">Devices {first}–{last} of {total}"
    );
    let link_for = |p: i64| {
        let mut href = format!("/ui/fleet?page={p}");
        for (key, value) in [
            ("q", &filter.search),
            ("tag", &filter.tag),
            ("attr", &attribute_text),
            ("state", &filter.state),
        ] {
            if !value.is_empty() {
                let _ = write!(href, "&{key}={}", url_part(value));
            }
        }
        href
    };
    if page > 1 {
        let _ = write!(
            body,
            " · <a href=\"{}\" id=\"prev-page\">previous</a>",
            esc(&link_for(page - 1))
        );
    }
    if page * PAGE_SIZE < total {
        let _ = write!(
            body,
            " · <a href=\"{}\" id=\"next-page\">next</a>",
            esc(&link_for(page + 1))
        );
    }
    body.push_str(
        "</p><table class=\"list\" id=\"devices\"><thead><tr><th>Controller ID</th><th>Name</th>\
                   <th>State</th><th>Installed</th><th>Last seen</th></tr></thead><tbody>",
    );
    for row in &rows {
        let seen = match row.last_poll_at {
            Some(at) => format!(
                "<span title=\"{}\">{}</span>",
                esc(&time(at)),
                esc(&ago(at, now))
            ),
            None => "never".into(),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/devices/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{seen}</td></tr>",
            url_part(&row.controller_id),
            esc(&row.controller_id),
            esc(&row.name),
            badge(row.state.as_str()),
            esc(row.installed.as_deref().unwrap_or("–")),
        );
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No devices match.</td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(render(ctx, "Fleet", "fleet", &body))
}

// ---------- device ----------

pub async fn device(
    State(state): AppState_,
    ctx: Ctx,
    Path(controller_id): Path<String>,
) -> Response {
    match device_page(&state, &ctx, &controller_id).await {
        Ok(response) | Err(response) => response,
    }
}

async fn set_label(state: &AppState, tenant_id: i64, ds_id: i64) -> Result<String, Response> {
    Ok(
        match db(state.store.distribution_set(tenant_id, ds_id).await)? {
            Some(set) => format!("{} {}", set.name, set.version),
            None => format!("set {ds_id}"),
        },
    )
}

async fn device_page(
    state: &AppState,
    ctx: &Ctx,
    controller_id: &str,
) -> Result<Response, Response> {
    let now = now_ms();
    let Some(target) = db(state.store.target(ctx.tenant.id, controller_id).await)? else {
        return Err(error_page(
            Some(ctx),
            StatusCode::NOT_FOUND,
            "No such device.",
        ));
    };
    let tags = db(state.store.target_tags(target.id).await)?;
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&target.attributes).unwrap_or_default();
    let actions = db(state
        .store
        .recent_target_actions(target.id, DEVICE_ACTIONS)
        .await)?;
    let installed = match target.installed_action_id {
        Some(action_id) => match db(state.store.action(action_id).await)? {
            Some(action) => Some(set_label(state, ctx.tenant.id, action.ds_id).await?),
            None => None,
        },
        None => None,
    };

    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<p class=\"crumbs\"><a href=\"/ui/fleet\">Fleet</a> › device</p><h1 id=\"device-id\">{}</h1>\
         <section class=\"cards\"><div class=\"card\"><h2>Device</h2><dl>\
         <dt>Name</dt><dd>{}</dd><dt>Installed</dt><dd id=\"installed\">{}</dd>\
         <dt>Last seen</dt><dd>{}</dd><dt>Address</dt><dd>{}</dd><dt>Tags</dt><dd>{}</dd>\
         <dt>Registered</dt><dd>{}</dd></dl></div>",
        esc(&target.controller_id),
        esc(&target.name),
        esc(installed.as_deref().unwrap_or("nothing installed by keel")),
        match target.last_poll_at {
            Some(at) => format!("{} ({})", esc(&time(at)), esc(&ago(at, now))),
            None => "never".into(),
        },
        esc(target.address.as_deref().unwrap_or("–")),
        if tags.is_empty() {
            "–".to_string()
        } else {
            tags.iter()
                .map(|t| format!("<a class=\"tag\" href=\"/ui/fleet?tag={}\">{}</a>", url_part(t), esc(t)))
                .collect::<Vec<_>>()
                .join(" ")
        },
        esc(&time(target.created_at)),
    );
    // Slots, from the attributes keel-agent reports for its booted slot (docs/agent.md):
    // `keel.slot`, `keel.version` and `keel.slot.<target>.<field>`.
    let mut targets: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (key, value) in &attributes {
        if let Some((target, field)) = ddi_attributes::parse_slot_target(key) {
            targets.entry(target).or_default().insert(field, value);
        }
    }
    let booted = attributes.get(ddi_attributes::SLOT);
    body.push_str("<div class=\"card\"><h2>Slots</h2>");
    if booted.is_none() && targets.is_empty() {
        let _ = write!(
            body,
            "<p>The device reports no <code>{}</code> attributes (keel-agent sends them).</p>",
            esc(ddi_attributes::SLOT)
        );
    } else {
        let _ = write!(
            body,
            "<p id=\"booted-slot\">Booted slot <b>{}</b>{}</p>",
            esc(booted.map_or("unknown", String::as_str)),
            match attributes.get(ddi_attributes::VERSION) {
                Some(v) => format!(", version <b>{}</b>", esc(v)),
                None => String::new(),
            }
        );
        body.push_str("<table class=\"list\" id=\"slots\"><thead><tr><th>Target</th><th>Image</th></tr></thead><tbody>");
        for (target, fields) in &targets {
            let details: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}: <b>{}</b>", esc(k), esc(v)))
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(target),
                details.join("<br>")
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</div><div class=\"card\"><h2>Attributes</h2>");
    if attributes.is_empty() {
        body.push_str("<p>None reported.</p>");
    } else {
        body.push_str("<table class=\"list\" id=\"attributes\"><tbody>");
        for (key, value) in &attributes {
            let _ = write!(
                body,
                "<tr><td><a href=\"/ui/fleet?attr={}\">{}</a></td><td>{}</td></tr>",
                url_part(&format!("{key}={value}")),
                esc(key),
                esc(value)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</div></section><h2>Action history</h2>");
    if actions.is_empty() {
        body.push_str("<p>No actions yet.</p>");
    }
    for action in &actions {
        let label = set_label(state, ctx.tenant.id, action.ds_id).await?;
        let rollout = match action.rollout_id {
            Some(id) => format!(" · <a href=\"/ui/rollouts/{id}\">rollout {id}</a>"),
            None => String::new(),
        };
        let _ = write!(
            body,
            "<section class=\"action status-{cls}\" id=\"action-{id}\"><h3>Action {id}: {label} {status}</h3>\
             <p class=\"meta\">{kind}{open} · created {created}{rollout}</p>\
             <table class=\"list history\"><thead><tr><th>Time</th><th>Status</th><th>Progress</th><th>Code</th><th>Messages</th></tr></thead><tbody>",
            cls = esc(action.status.as_str()),
            id = action.id,
            label = esc(&label),
            status = badge(action.status.as_str()),
            kind = esc(&action.action_type),
            open = if action.active != 0 { " · open" } else { "" },
            created = esc(&time(action.created_at)),
        );
        for entry in db(state.store.action_history(action.id).await)? {
            let messages: Vec<String> = serde_json::from_str(&entry.messages).unwrap_or_default();
            let progress = match (entry.progress_cnt, entry.progress_of) {
                (Some(cnt), Some(of)) if of > 0 => format!(
                    "<progress value=\"{}\" max=\"{of}\"></progress> {cnt}/{of}",
                    cnt.clamp(0, of)
                ),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{progress}</td><td>{}</td><td class=\"messages\">{}</td></tr>",
                esc(&time(entry.reported_at)),
                badge(entry.status.as_str()),
                entry.code.map(|c| c.to_string()).unwrap_or_default(),
                messages.iter().map(|m| esc(m)).collect::<Vec<_>>().join("<br>"),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    Ok(render(ctx, &target.controller_id, "fleet", &body))
}

// ---------- software modules, artifacts, distribution sets ----------

pub async fn software(State(state): AppState_, ctx: Ctx) -> Response {
    match software_page(&state, &ctx).await {
        Ok(response) | Err(response) => response,
    }
}

fn human_size(size: i64) -> String {
    let size = size as f64;
    if size >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", size / (1024.0 * 1024.0 * 1024.0))
    } else if size >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", size / (1024.0 * 1024.0))
    } else if size >= 1024.0 {
        format!("{:.1} KiB", size / 1024.0)
    } else {
        format!("{size} B")
    }
}

async fn software_page(state: &AppState, ctx: &Ctx) -> Result<Response, Response> {
    let modules = db(state.store.modules(ctx.tenant.id).await)?;
    let sets = db(state.store.distribution_sets(ctx.tenant.id).await)?;
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<h1>Artifacts and distribution sets</h1><h2>Software modules</h2>\
                   <table class=\"list\" id=\"modules\"><thead><tr><th>ID</th><th>Type</th><th>Name</th><th>Version</th><th>Artifacts</th></tr></thead><tbody>");
    for module in &modules {
        let artifacts = db(state.store.artifacts(module.id).await)?;
        let list: Vec<String> = artifacts
            .iter()
            .map(|a| {
                format!(
                    "<span class=\"artifact\" title=\"sha256 {}\">{}</span> ({})",
                    esc(&a.sha256),
                    esc(&a.filename),
                    human_size(a.size)
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr data-module-id=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&module.module_type),
            esc(&module.name),
            esc(&module.version),
            if list.is_empty() { "none".to_string() } else { list.join("<br>") },
            id = module.id,
        );
    }
    if modules.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No software modules yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    if ctx.can_operate() {
        let _ = write!(
            body,
            "<section class=\"forms\"><form method=\"post\" action=\"/ui/software/modules\" id=\"module-form\" class=\"box\">\
             <h3>New software module</h3>{csrf}\
             <label>Name <input name=\"name\" required maxlength=\"128\"></label>\
             <label>Version <input name=\"version\" required maxlength=\"128\"></label>\
             <label>Type <input name=\"type\" value=\"os\" required maxlength=\"128\"></label>\
             <button type=\"submit\">Create module</button></form>\
             <form id=\"upload-form\" class=\"box\"><h3>Upload an artifact</h3>{csrf}\
             <label>Module <select name=\"module\" id=\"upload-module\" required>",
            csrf = csrf_field(ctx)
        );
        for module in modules.iter().rev() {
            let _ = write!(
                body,
                "<option value=\"{}\">{} {} ({})</option>",
                module.id,
                esc(&module.name),
                esc(&module.version),
                esc(&module.module_type)
            );
        }
        body.push_str("</select></label><label>File <input type=\"file\" name=\"file\" id=\"upload-file\" required></label>\
                       <button type=\"submit\">Upload</button>\
                       <progress id=\"upload-progress\" value=\"0\" max=\"100\" hidden></progress>\
                       <p id=\"upload-status\" class=\"status\" aria-live=\"polite\"></p></form></section>");
    }
    body.push_str("<h2>Distribution sets</h2><table class=\"list\" id=\"sets\"><thead><tr><th>ID</th><th>Name</th><th>Version</th><th>Modules</th></tr></thead><tbody>");
    for set in &sets {
        let members = db(state.store.set_modules(set.id).await)?;
        let names: Vec<String> = members
            .iter()
            .map(|m| format!("{} {}", esc(&m.name), esc(&m.version)))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            set.id,
            esc(&set.name),
            esc(&set.version),
            names.join(", ")
        );
    }
    if sets.is_empty() {
        body.push_str("<tr><td colspan=\"4\">No distribution sets yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    if ctx.can_operate() && !modules.is_empty() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/software/sets\" id=\"set-form\" class=\"box\"><h3>New distribution set</h3>{}\
             <label>Name <input name=\"name\" required maxlength=\"128\"></label>\
             <label>Version <input name=\"version\" required maxlength=\"128\"></label><fieldset><legend>Modules</legend>",
            csrf_field(ctx)
        );
        for module in modules.iter().rev() {
            let _ = write!(
                body,
                "<label class=\"check\"><input type=\"checkbox\" name=\"module\" value=\"{}\"> {} {} ({})</label>",
                module.id,
                esc(&module.name),
                esc(&module.version),
                esc(&module.module_type)
            );
        }
        body.push_str("</fieldset><button type=\"submit\">Create set</button></form>");
    }
    Ok(render(ctx, "Artifacts", "software", &body))
}

pub async fn create_module(State(state): AppState_, ctx: Ctx, body: Bytes) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx.check_csrf(form.get("csrf")) {
        return response;
    }
    let request = json!({ "name": form.text("name"), "version": form.text("version"), "type": form.text("type") });
    post_json(&state, &ctx, "/rest/v1/softwaremodules", request, |_| {
        "/ui/software".into()
    })
    .await
}

pub async fn create_set(State(state): AppState_, ctx: Ctx, body: Bytes) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx.check_csrf(form.get("csrf")) {
        return response;
    }
    let modules: Vec<i64> = form
        .all("module")
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    let request =
        json!({ "name": form.text("name"), "version": form.text("version"), "modules": modules });
    post_json(&state, &ctx, "/rest/v1/distributionsets", request, |_| {
        "/ui/software".into()
    })
    .await
}

/// POSTs JSON to the management API; on success redirects to `next(reply body)`.
async fn post_json(
    state: &Arc<AppState>,
    ctx: &Ctx,
    path: &str,
    request: Value,
    next: impl FnOnce(&Value) -> String,
) -> Response {
    let reply = match call_api(
        state,
        ctx,
        Method::POST,
        path,
        Some("application/json"),
        Body::from(request.to_string()),
    )
    .await
    {
        Ok(reply) => reply,
        Err(response) => return response,
    };
    if !reply.status.is_success() {
        return api_failure(ctx, &reply);
    }
    Redirect::to(&next(&reply.body)).into_response()
}

/// Streams an upload (XHR from the artifacts page, which shows its progress) to the management API.
pub async fn upload_artifact(
    State(state): AppState_,
    ctx: Ctx,
    Path(module_id): Path<i64>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let presented = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !presented.is_some_and(|token| equal_secret(token, &ctx.csrf)) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "forbidden", "message": "missing or wrong CSRF token" })),
        )
            .into_response();
    }
    if let Err(err) = crate::serve::check_declared_length(&headers, state.config.max_artifact_bytes)
    {
        return err.into_response();
    }
    let filename = query_fields(query).text("filename");
    let path = format!(
        "/rest/v1/softwaremodules/{module_id}/artifacts?filename={}",
        url_part(&filename)
    );
    match call_api(
        &state,
        &ctx,
        Method::POST,
        &path,
        Some("application/octet-stream"),
        body,
    )
    .await
    {
        Ok(reply) => (reply.status, Json(reply.body)).into_response(),
        Err(response) => response,
    }
}

// ---------- rollouts ----------

fn add_counts(total: &mut GroupCounts, counts: &GroupCounts) {
    total.total += counts.total;
    total.scheduled += counts.scheduled;
    total.running += counts.running;
    total.finished += counts.finished;
    total.error += counts.error;
    total.canceled += counts.canceled;
}

/// A stacked progress bar (segment widths are set by dashboard.js from the data attributes) and
/// its counts as text.
fn progress_bar(id: &str, counts: &GroupCounts) -> String {
    format!(
        "<div class=\"bar\" id=\"{id}\" data-total=\"{}\" data-finished=\"{}\" data-error=\"{}\" data-running=\"{}\" data-canceled=\"{}\">\
         <span class=\"seg finished\"></span><span class=\"seg error\"></span><span class=\"seg running\"></span><span class=\"seg canceled\"></span></div>\
         <span class=\"counts-text\" id=\"{id}-text\">{}</span>",
        counts.total,
        counts.finished,
        counts.error,
        counts.running,
        counts.canceled,
        counts_text(counts)
    )
}

fn counts_text(c: &GroupCounts) -> String {
    format!(
        "{} of {} finished · {} failed · {} running · {} waiting · {} canceled",
        c.finished, c.total, c.error, c.running, c.scheduled, c.canceled
    )
}

pub async fn rollouts(State(state): AppState_, ctx: Ctx) -> Response {
    match rollouts_page(&state, &ctx).await {
        Ok(response) | Err(response) => response,
    }
}

async fn rollouts_page(state: &AppState, ctx: &Ctx) -> Result<Response, Response> {
    let rollouts = db(state.store.rollouts(ctx.tenant.id).await)?;
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<h1>Rollouts</h1><table class=\"list\" id=\"rollouts\"><thead><tr><th>ID</th><th>Name</th><th>Distribution set</th>\
                   <th>Status</th><th>Progress</th></tr></thead><tbody>");
    for rollout in rollouts.iter().rev() {
        let mut totals = GroupCounts::default();
        for group in db(state.store.rollout_groups(rollout.id).await)? {
            add_counts(&mut totals, &db(state.store.group_counts(group.id).await)?);
        }
        let _ = write!(
            body,
            "<tr><td>{id}</td><td><a href=\"/ui/rollouts/{id}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rollout.name),
            esc(&set_label(state, ctx.tenant.id, rollout.ds_id).await?),
            badge(rollout.status.as_str()),
            progress_bar(&format!("bar-{}", rollout.id), &totals),
            id = rollout.id,
        );
    }
    if rollouts.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No rollouts yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    if ctx.can_operate() {
        let sets = db(state.store.distribution_sets(ctx.tenant.id).await)?;
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/rollouts\" id=\"rollout-form\" class=\"box\"><h3>New rollout</h3>{}\
             <label>Name <input name=\"name\" required maxlength=\"128\"></label>\
             <label>Distribution set <select name=\"set\" required>",
            csrf_field(ctx)
        );
        for set in sets.iter().rev() {
            let _ = write!(
                body,
                "<option value=\"{}\">{} {}</option>",
                set.id,
                esc(&set.name),
                esc(&set.version)
            );
        }
        body.push_str("</select></label>\
             <label>Devices with tag <input name=\"tag\"></label>\
             <label>and/or controller ids (space or comma separated) <input name=\"targets\"></label>\
             <label>Groups <input type=\"number\" name=\"groups\" value=\"1\" min=\"1\" max=\"500\"></label>\
             <label>Success threshold % <input type=\"number\" name=\"success\" value=\"100\" min=\"0\" max=\"100\"></label>\
             <label>Error threshold % <input type=\"number\" name=\"error\" value=\"0\" min=\"0\" max=\"100\"></label>\
             <label>Type <select name=\"type\"><option>forced</option><option>soft</option><option>downloadonly</option></select></label>\
             <button type=\"submit\">Create rollout</button></form>");
    }
    Ok(render(ctx, "Rollouts", "rollouts", &body))
}

pub async fn create_rollout(State(state): AppState_, ctx: Ctx, body: Bytes) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx.check_csrf(form.get("csrf")) {
        return response;
    }
    let number = |name: &str, default: i64| form.text(name).parse::<i64>().unwrap_or(default);
    let targets: Vec<String> = form
        .text("targets")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let tag = form.text("tag");
    let mut request = json!({
        "name": form.text("name"),
        "distributionSetId": number("set", 0),
        "type": form.text("type"),
        "successThreshold": number("success", 100),
        "errorThreshold": number("error", 0),
        "amountGroups": number("groups", 1).max(0),
        "targets": targets,
    });
    if !tag.is_empty() {
        request["tag"] = json!(tag);
    }
    post_json(&state, &ctx, "/rest/v1/rollouts", request, |created| {
        format!("/ui/rollouts/{}", created["id"].as_i64().unwrap_or(0))
    })
    .await
}

/// Which operations an operator may start from each rollout status (the API decides in the end).
const OPERATIONS: [(&str, &str, &[RolloutStatus]); 4] = [
    ("start", "Start", &[RolloutStatus::Ready]),
    ("pause", "Pause", &[RolloutStatus::Running]),
    (
        "resume",
        "Resume",
        &[RolloutStatus::Paused, RolloutStatus::Halted],
    ),
    (
        "cancel",
        "Cancel",
        &[
            RolloutStatus::Ready,
            RolloutStatus::Running,
            RolloutStatus::Paused,
            RolloutStatus::Halted,
        ],
    ),
];

async fn progress_json(state: &AppState, ctx: &Ctx, id: i64) -> Result<Option<Value>, Response> {
    let Some(rollout) = db(state.store.rollout(ctx.tenant.id, id).await)? else {
        return Ok(None);
    };
    let mut totals = GroupCounts::default();
    let mut groups = Vec::new();
    for group in db(state.store.rollout_groups(rollout.id).await)? {
        let counts = db(state.store.group_counts(group.id).await)?;
        add_counts(&mut totals, &counts);
        let failed = db(state
            .store
            .group_failed_devices(group.id, FAILED_LISTED)
            .await)?;
        groups.push(json!({
            "id": group.id, "name": group.name, "status": group.status,
            "counts": counts, "text": counts_text(&counts), "failed": failed,
        }));
    }
    Ok(Some(json!({
        "id": rollout.id, "name": rollout.name, "status": rollout.status,
        "statusReason": rollout.status_reason, "counts": totals, "text": counts_text(&totals),
        "groups": groups,
    })))
}

pub async fn rollout_progress(State(state): AppState_, ctx: Ctx, Path(id): Path<i64>) -> Response {
    match progress_json(&state, &ctx, id).await {
        Ok(Some(value)) => Json(value).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": "rollout not found"})),
        )
            .into_response(),
        Err(response) => response,
    }
}

pub async fn rollout(State(state): AppState_, ctx: Ctx, Path(id): Path<i64>) -> Response {
    match rollout_page(&state, &ctx, id).await {
        Ok(response) | Err(response) => response,
    }
}

fn failed_links(failed: &[String]) -> String {
    failed
        .iter()
        .map(|c| {
            format!(
                "<a class=\"failed-device\" href=\"/ui/devices/{}\">{}</a>",
                url_part(c),
                esc(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn rollout_page(state: &AppState, ctx: &Ctx, id: i64) -> Result<Response, Response> {
    let Some(rollout) = db(state.store.rollout(ctx.tenant.id, id).await)? else {
        return Err(error_page(
            Some(ctx),
            StatusCode::NOT_FOUND,
            "No such rollout.",
        ));
    };
    let progress = progress_json(state, ctx, id).await?.unwrap_or(Value::Null);
    let totals: GroupCounts = {
        let mut totals = GroupCounts::default();
        for group in db(state.store.rollout_groups(rollout.id).await)? {
            add_counts(&mut totals, &db(state.store.group_counts(group.id).await)?);
        }
        totals
    };
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<p class=\"crumbs\"><a href=\"/ui/rollouts\">Rollouts</a> › rollout {id}</p>\
         <section id=\"rollout\" data-progress-url=\"/ui/rollouts/{id}/progress\" data-status=\"{status_attr}\">\
         <h1>{name} <span id=\"rollout-status\">{status}</span></h1>\
         <p class=\"reason\" id=\"rollout-reason\">{reason}</p>\
         <p class=\"meta\">Distribution set <b>{set}</b> · type {kind} · success threshold {success}% · error threshold {error}% · created {created}\
         <span id=\"live\" class=\"live\"></span></p>",
        name = esc(&rollout.name),
        status_attr = esc(rollout.status.as_str()),
        status = badge(rollout.status.as_str()),
        reason = esc(rollout.status_reason.as_deref().unwrap_or("")),
        set = esc(&set_label(state, ctx.tenant.id, rollout.ds_id).await?),
        kind = esc(&rollout.action_type),
        success = rollout.success_threshold,
        error = rollout.error_threshold,
        created = esc(&time(rollout.created_at)),
    );
    if ctx.can_operate() {
        body.push_str("<div class=\"operations\" id=\"operations\">");
        for (operation, label, when) in OPERATIONS {
            let hidden = if when.contains(&rollout.status) {
                ""
            } else {
                " hidden"
            };
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/ui/rollouts/{id}/{operation}\" data-show-when=\"{when}\"{hidden}>{}\
                 <button type=\"submit\" id=\"op-{operation}\" class=\"op-{operation}\">{label}</button></form>",
                csrf_field(ctx),
                when = when.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
            );
        }
        body.push_str("</div>");
    }
    body.push_str(&progress_bar("bar-total", &totals));
    body.push_str("<h2>Groups</h2><table class=\"list\" id=\"groups\"><thead><tr><th>#</th><th>Name</th><th>Status</th><th>Progress</th><th>Failed devices</th></tr></thead><tbody>");
    for group in progress["groups"].as_array().into_iter().flatten() {
        let counts: GroupCounts = GroupCounts {
            total: group["counts"]["total"].as_i64().unwrap_or(0),
            scheduled: group["counts"]["scheduled"].as_i64().unwrap_or(0),
            running: group["counts"]["running"].as_i64().unwrap_or(0),
            finished: group["counts"]["finished"].as_i64().unwrap_or(0),
            error: group["counts"]["error"].as_i64().unwrap_or(0),
            canceled: group["counts"]["canceled"].as_i64().unwrap_or(0),
        };
        let group_id = group["id"].as_i64().unwrap_or(0);
        let failed: Vec<String> = group["failed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        let _ = write!(
            body,
            "<tr data-group-id=\"{group_id}\"><td>{group_id}</td><td>{}</td><td class=\"group-status\">{}</td><td>{}</td><td class=\"failed\">{}</td></tr>",
            esc(group["name"].as_str().unwrap_or("")),
            badge(group["status"].as_str().unwrap_or("")),
            progress_bar(&format!("bar-group-{group_id}"), &counts),
            failed_links(&failed),
        );
    }
    body.push_str("</tbody></table></section>");
    Ok(render(ctx, &rollout.name, "rollouts", &body))
}

pub async fn rollout_operation(
    State(state): AppState_,
    ctx: Ctx,
    Path((id, operation)): Path<(i64, String)>,
    body: Bytes,
) -> Response {
    let form = FormFields::parse(&body);
    if let Err(response) = ctx.check_csrf(form.get("csrf")) {
        return response;
    }
    if !OPERATIONS.iter().any(|(op, _, _)| *op == operation) {
        return error_page(
            Some(&ctx),
            StatusCode::NOT_FOUND,
            "No such rollout operation.",
        );
    }
    let path = format!("/rest/v1/rollouts/{id}/{operation}");
    let reply = match call_api(&state, &ctx, Method::POST, &path, None, Body::empty()).await {
        Ok(reply) => reply,
        Err(response) => return response,
    };
    if !reply.status.is_success() {
        return api_failure(&ctx, &reply);
    }
    Redirect::to(&format!("/ui/rollouts/{id}")).into_response()
}

// ---------- TUF ----------

struct RoleStatus {
    role: String,
    version: Option<u64>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
    problem: Option<String>,
}

/// The status of a role from its stored unversioned file (`None`: not stored).
fn read_role(role: &str, bytes: Option<Vec<u8>>) -> RoleStatus {
    let parsed = bytes
        .ok_or_else(|| "not published yet".to_string())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(envelope) => {
            let signed = &envelope["signed"];
            let expires = signed["expires"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            RoleStatus {
                role: role.to_string(),
                version: signed["version"].as_u64(),
                problem: expires.is_none().then(|| "no valid expiry".to_string()),
                expires,
            }
        }
        Err(e) => RoleStatus {
            role: role.to_string(),
            version: None,
            expires: None,
            problem: Some(e),
        },
    }
}

/// Seconds before expiry at which a role is flagged: root is renewed offline by people, so a month
/// ahead; online roles are re-signed by the server, so only a quarter of their normal lifetime
/// left means re-signing is not happening.
fn warn_before(role: &str) -> i64 {
    let config = keel_tuf_repo::RepoConfig::default();
    match role {
        "root" => config.root_warning,
        "timestamp" => config.timestamp_lifetime / 4,
        "snapshot" => config.snapshot_lifetime / 4,
        _ => config.targets_lifetime / 4,
    }
}

pub async fn tuf(State(state): AppState_, ctx: Ctx) -> Response {
    let tenant = ctx.tenant.name.clone();
    let mut body = String::from("<h1>TUF repository</h1>");
    let enabled = match crate::tuf::enabled(&state, &tenant).await {
        Ok(enabled) => enabled,
        Err(e) => {
            let _ = write!(
                body,
                "<p id=\"tuf-error\">The TUF repository of tenant {} cannot be read: {}</p>",
                esc(&tenant),
                esc(&e.to_string())
            );
            return render(&ctx, "TUF", "tuf", &body);
        }
    };
    if !enabled {
        let _ = write!(
            body,
            "<p id=\"tuf-disabled\">Tenant {} has no TUF repository: create one offline with <code>keel tuf init</code> \
             and install it in the server's data directory (docs/tuf.md).</p>",
            esc(&tenant)
        );
        return render(&ctx, "TUF", "tuf", &body);
    }
    // The database holds the authoritative copy (every replica serves it).
    let stored = |name: String| {
        let (state, tenant) = (state.clone(), tenant.clone());
        async move {
            crate::tuf::stored_file(&state, &tenant, &name)
                .await
                .ok()
                .flatten()
        }
    };
    let mut roles = Vec::new();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        roles.push(read_role(role, stored(format!("{role}.json")).await));
    }
    // Delegated hashed bins, named in targets' delegations.
    let targets: Value = stored("targets.json".into())
        .await
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    for role in targets["signed"]["delegations"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(name) = role["name"].as_str() {
            let file = format!("{}.json", keel_tuf::store::percent_encode(name));
            roles.push(read_role(name, stored(file).await));
        }
    }
    let now = chrono::Utc::now();
    body.push_str("<table class=\"list\" id=\"tuf-roles\"><thead><tr><th>Role</th><th>Version</th><th>Expires</th><th>Time left</th></tr></thead><tbody>");
    let (top, bins) = roles.split_at(roles.len().min(4));
    let write_row = |body: &mut String, role: &RoleStatus| {
        let (class, left) = match role.expires {
            Some(expires) => {
                let left = expires - now;
                let class = if left.num_seconds() <= 0 {
                    "expired"
                } else if left.num_seconds() < warn_before(&role.role) {
                    "expiring"
                } else {
                    "ok"
                };
                let text = if left.num_seconds() <= 0 {
                    "expired".to_string()
                } else if left.num_days() >= 2 {
                    format!("{} days", left.num_days())
                } else {
                    format!("{} h", left.num_hours())
                };
                (class, text)
            }
            None => ("expired", role.problem.clone().unwrap_or_default()),
        };
        let _ = write!(
            body,
            "<tr class=\"tuf-{class}\" data-role=\"{role}\"><td>{role}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            role.version.map(|v| v.to_string()).unwrap_or_else(|| "–".into()),
            role.expires.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "–".into()),
            esc(&left),
            role = esc(&role.role),
        );
    };
    for role in top {
        write_row(&mut body, role);
    }
    // Hundreds of bins: show the one expiring first and a count.
    if let Some(first) = bins
        .iter()
        .min_by_key(|r| r.expires.map(|t| t.timestamp()).unwrap_or(i64::MIN))
    {
        write_row(&mut body, first);
        let _ = write!(
            body,
            "<tr><td colspan=\"4\">{} delegated bins; the row above is the one expiring first.</td></tr>",
            bins.len()
        );
    }
    body.push_str("</tbody></table><p class=\"hint\">The server re-signs timestamp, snapshot, targets and bins before they expire \
                   (when devices fetch <code>timestamp.json</code>); root is renewed offline with <code>keel tuf rotate-root</code>.</p>");
    render(&ctx, "TUF", "tuf", &body)
}
