//! The web dashboard under `/ui` (docs/dashboard.md): server-rendered HTML with a little JS,
//! built into the binary.
//!
//! * Login with a management API token; the session cookie (`HttpOnly`, `SameSite=Strict`,
//!   random id) maps to the token through the database ([`Sessions`]), so every replica serves
//!   every session. Every request re-checks the token, so a deleted token ends its sessions at once.
//! * Every POST carries the session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
//! * Changes go through the management API itself (an in-process request carrying the session's
//!   token), so roles are enforced in one place; the UI only hides what the role may not do.

// Page code returns early with a finished error page (`Result<_, Response>`); the size of a
// response on the error path does not matter here.
#![allow(clippy::result_large_err)]

mod audit_page;
mod html;
mod pages;

use crate::auth::{self, Role};
use crate::store::{now_ms, DashboardSession, MintedToken, Store, Tenant};
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

pub use html::esc;
pub use pages::hash_password;

const SESSION_COOKIE: &str = "keel_session";
const LOGIN_COOKIE: &str = "keel_login";
/// Sessions end after this long without a request.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

/// Dashboard login sessions, kept in the database (`dashboard_sessions`, migration 0200) so any
/// keel-server replica serves any session and a restart keeps operators logged in. The cookie
/// holds the random session id; the row holds the id's sha256, the CSRF token, the tenant and the
/// session's management API token sealed (ChaCha20-Poly1305) under a key derived from the id, so
/// the database alone cannot act as a session and the token never goes to the browser.
#[derive(Default)]
pub struct Sessions;

/// What a live session gives a request.
struct Live {
    token: String,
    csrf: String,
    tenant: String,
}

fn session_id_hash(id: &str) -> String {
    auth::hash_token(id)
}

fn session_cipher(id: &str) -> chacha20poly1305::ChaCha20Poly1305 {
    use chacha20poly1305::KeyInit;
    use sha2::Digest;
    let key = sha2::Sha256::new()
        .chain_update(b"keel dashboard session token key\0")
        .chain_update(id.as_bytes())
        .finalize();
    chacha20poly1305::ChaCha20Poly1305::new(&key)
}

/// Each session id seals exactly one token, so a fixed nonce never repeats under a key.
const SEAL_NONCE: [u8; 12] = [0; 12];

fn seal_token(id: &str, token: &str) -> String {
    use chacha20poly1305::aead::Aead;
    session_cipher(id)
        .encrypt(&SEAL_NONCE.into(), token.as_bytes())
        .map(hex::encode)
        .unwrap_or_default()
}

fn open_token(id: &str, sealed: &str) -> Option<String> {
    use chacha20poly1305::aead::Aead;
    let bytes = hex::decode(sealed).ok()?;
    let plain = session_cipher(id)
        .decrypt(&SEAL_NONCE.into(), bytes.as_slice())
        .ok()?;
    String::from_utf8(plain).ok()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A session's last use is written at most this often (not on every page view).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Sessions {
    /// Starts a session for `token` (minted as `(name, role)` for a password login, in the same
    /// transaction); returns the session id for the cookie. Expired sessions and the minted
    /// tokens of sessions that ended without logout are removed first.
    async fn create(
        &self,
        store: &Store,
        token: String,
        mint: Option<(String, String)>,
        tenant: &Tenant,
    ) -> Result<String, sqlx::Error> {
        let id = auth::generate_token();
        let now = now_ms();
        store
            .prune_dashboard_sessions(now.saturating_sub(millis(SESSION_IDLE)))
            .await?;
        let session = DashboardSession {
            id_hash: session_id_hash(&id),
            token_sealed: seal_token(&id, &token),
            token_hash: auth::hash_token(&token),
            minted: mint.is_some(),
            csrf: auth::generate_token(),
            tenant: tenant.name.clone(),
            last_used_at: now,
        };
        store
            .create_dashboard_session(
                &session,
                mint.as_ref().map(|(name, role)| MintedToken {
                    name,
                    role,
                    tenant_id: tenant.id,
                }),
            )
            .await?;
        Ok(id)
    }

    async fn touch(&self, store: &Store, id: &str) -> Result<Option<Live>, sqlx::Error> {
        let id_hash = session_id_hash(id);
        let Some(session) = store.dashboard_session(&id_hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let idle = now.saturating_sub(session.last_used_at);
        if idle >= millis(SESSION_IDLE) {
            store.delete_dashboard_session(&id_hash).await?;
            return Ok(None);
        }
        let Some(token) = open_token(id, &session.token_sealed) else {
            return Ok(None);
        };
        if idle >= millis(TOUCH_EVERY) {
            store.touch_dashboard_session(&id_hash, now).await?;
        }
        Ok(Some(Live {
            token,
            csrf: session.csrf,
            tenant: session.tenant,
        }))
    }

    /// Ends a session; returns the hash of its token if it was minted for a password login.
    async fn remove(&self, store: &Store, id: &str) -> Result<Option<String>, sqlx::Error> {
        Ok(store
            .delete_dashboard_session(&session_id_hash(id))
            .await?
            .filter(|s| s.minted)
            .map(|s| s.token_hash))
    }
}

/// The dashboard's routes; merged into the server's router.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/assets/dashboard.css", get(css))
        .route("/ui/assets/dashboard.js", get(js))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/fleet", get(pages::fleet))
        .route("/ui/devices/{controller_id}", get(pages::device))
        .route("/ui/software", get(pages::software))
        .route("/ui/software/modules", post(pages::create_module))
        .route(
            "/ui/software/modules/{id}/artifacts",
            post(pages::upload_artifact),
        )
        .route("/ui/software/sets", post(pages::create_set))
        .route(
            "/ui/rollouts",
            get(pages::rollouts).post(pages::create_rollout),
        )
        .route("/ui/rollouts/{id}", get(pages::rollout))
        .route("/ui/rollouts/{id}/progress", get(pages::rollout_progress))
        .route(
            "/ui/rollouts/{id}/{operation}",
            post(pages::rollout_operation),
        )
        .route("/ui/tuf", get(pages::tuf))
        .route("/ui/users", get(pages::users).post(pages::create_user))
        .route("/ui/users/{id}/delete", post(pages::delete_user))
        .route("/ui/audit", get(audit_page::audit))
        .layer(Extension(Arc::new(Sessions)))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // No inline script or style: all JS and CSS come from /ui/assets.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn equal_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A logged-in dashboard user, re-authenticated on every request.
pub struct Ctx {
    session_id: String,
    token: String,
    /// The session's CSRF token; every POST must carry it.
    pub csrf: String,
    /// The session's token name (`dashboard-session:<user>` for password logins).
    pub name: String,
    /// The session token's role: decides which controls the pages show.
    pub role: Role,
    /// The tenant the session acts on.
    pub tenant: Tenant,
    /// The client's address, for the audit log.
    pub address: Option<String>,
}

impl Ctx {
    /// Whether the user may change things (operator or admin).
    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }

    /// Whether the user may manage tenants, tokens and accounts.
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    fn viewer(&self) -> html::Viewer<'_> {
        html::Viewer {
            name: &self.name,
            role: self.role.as_str(),
            tenant: &self.tenant.name,
            csrf: &self.csrf,
        }
    }

    /// Checks the CSRF token of a state-changing request.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), Response> {
        match presented {
            Some(token) if equal_secret(token, &self.csrf) => Ok(()),
            _ => Err(error_page(
                Some(self),
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong. Reload the page and try again.",
            )),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Some(Extension(sessions)) = parts
            .extensions
            .get::<Arc<Sessions>>()
            .cloned()
            .map(Extension)
        else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let session_id = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
        let Live {
            token,
            csrf,
            tenant: tenant_name,
        } = sessions
            .touch(&state.store, &session_id)
            .await
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(to_login)?;
        let identity = state
            .store
            .api_token_identity(&auth::hash_token(&token))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some(crate::store::TokenIdentity {
            name,
            role,
            tenant_id,
        }) = identity
        else {
            // The token was deleted: the session ends with it.
            sessions
                .remove(&state.store, &session_id)
                .await
                .map_err(|e| internal(e.to_string()))?;
            return Err(to_login());
        };
        let role = Role::parse(&role).ok_or_else(to_login)?;
        let tenant = state
            .store
            .tenant_by_name(&tenant_name)
            .await
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(to_login)?;
        // A session acts on one tenant with a token bound to that tenant (or a cross-tenant one);
        // anything else is a session that must not exist.
        if tenant_id.is_some_and(|own| own != tenant.id) {
            tracing::warn!("dashboard session for tenant {tenant_name:?} holds a token of another tenant: ended");
            sessions
                .remove(&state.store, &session_id)
                .await
                .map_err(|e| internal(e.to_string()))?;
            return Err(to_login());
        }
        Ok(Ctx {
            session_id,
            token,
            csrf,
            name,
            role,
            tenant,
            address: crate::audit::client_address(&parts.extensions),
        })
    }
}

fn internal(message: String) -> Response {
    tracing::error!("dashboard: {message}");
    error_page(None, StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// An HTML error page with the status code.
pub fn error_page(ctx: Option<&Ctx>, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>{} {}</h1><p class=\"error\" id=\"error\">{}</p><p><a href=\"javascript:history.back()\">Back</a></p>",
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("")),
        esc(message)
    );
    let viewer = ctx.map(Ctx::viewer);
    (
        status,
        axum::response::Html(html::page("Error", "", viewer.as_ref(), &body)),
    )
        .into_response()
}

/// A management API response seen from the dashboard.
pub struct ApiReply {
    /// The API's HTTP status.
    pub status: StatusCode,
    /// The API's JSON body (`Null` if it was not JSON).
    pub body: serde_json::Value,
}

impl ApiReply {
    /// The API's error `message`, or the status text when the body has none.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| self.status.to_string())
    }
}

/// Performs a management API call in-process with the session's token and tenant, so the API's
/// own validation and role checks decide.
pub async fn call_api(
    state: &Arc<AppState>,
    ctx: &Ctx,
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Body,
) -> Result<ApiReply, Response> {
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::AUTHORIZATION, format!("Bearer {}", ctx.token))
        .header(crate::mgmt::TENANT_HEADER, ctx.tenant.name.as_str());
    if let Some(address) = &ctx.address {
        request = request.extension(crate::audit::ClientAddress(address.clone()));
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(body)
        .map_err(|e| internal(format!("building API request: {e}")))?;
    let api = crate::mgmt::api(state).with_state(state.clone());
    // Authenticated by the session just now: not throttled again (crate::throttle).
    let response = match crate::throttle::in_process(api.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| internal(format!("reading API response: {e}")))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(ApiReply { status, body })
}

/// Turns a failed API reply into an error page with the API's status and message.
pub fn api_failure(ctx: &Ctx, reply: &ApiReply) -> Response {
    error_page(Some(ctx), reply.status, &reply.message())
}

/// Form fields of an `application/x-www-form-urlencoded` body (repeated names kept in order).
pub struct FormFields(pub Vec<(String, String)>);

impl FormFields {
    /// Decodes the body; malformed pairs are decoded leniently, never refused.
    pub fn parse(body: &[u8]) -> FormFields {
        FormFields(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of the field `name`, untrimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A trimmed field; empty when missing.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_string()
    }

    /// Every value of the field `name` (checkboxes, multi-selects), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The session cookie attributes: HttpOnly (no script access), SameSite=Strict (no cross-site
/// requests carry it), scoped to the dashboard.
fn session_cookie(id: &str, max_age_secs: u64) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

/// Shared state reachable from page handlers.
pub type AppRef = State<Arc<AppState>>;
