//! The web dashboard under `/ui` (docs/dashboard.md): server-rendered HTML with a little JS,
//! built into the binary.
//!
//! * Login with a management API token; the session cookie (`HttpOnly`, `SameSite=Strict`,
//!   random id) maps to the token in server memory. Every request re-checks the token, so a
//!   deleted token ends its sessions at once.
//! * Every POST carries the session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
//! * Changes go through the management API itself (an in-process request carrying the session's
//!   token), so roles are enforced in one place; the UI only hides what the role may not do.

// Page code returns early with a finished error page (`Result<_, Response>`); the size of a
// response on the error path does not matter here.
#![allow(clippy::result_large_err)]

mod html;
mod pages;

use crate::auth::{self, Role};
use crate::store::Tenant;
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tower::ServiceExt;

pub use html::esc;

const SESSION_COOKIE: &str = "keel_session";
const LOGIN_COOKIE: &str = "keel_login";
/// Sessions end after this long without a request.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
const MAX_SESSIONS: usize = 10_000;

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

struct Session {
    token: String,
    /// The token was minted for a password login (deleted again at logout).
    minted: bool,
    csrf: String,
    tenant: String,
    last_used: Instant,
}

/// Logged-in sessions, in memory: a restart asks operators to log in again.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create(&self, token: String, minted: bool, tenant: String) -> String {
        let id = auth::generate_token();
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        if map.len() >= MAX_SESSIONS {
            // Drop the least recently used session rather than refusing logins.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                token,
                minted,
                csrf: auth::generate_token(),
                tenant,
                last_used: now,
            },
        );
        id
    }

    fn touch(&self, id: &str) -> Option<(String, String, String)> {
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        let now = Instant::now();
        if now.duration_since(session.last_used) >= SESSION_IDLE {
            map.remove(id);
            return None;
        }
        session.last_used = now;
        Some((
            session.token.clone(),
            session.csrf.clone(),
            session.tenant.clone(),
        ))
    }

    /// Ends a session; returns its token if it was minted for a password login.
    fn remove(&self, id: &str) -> Option<String> {
        self.lock().remove(id).filter(|s| s.minted).map(|s| s.token)
    }

    /// Hashes of the minted tokens of live sessions.
    fn minted_token_hashes(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|s| s.minted && now.duration_since(s.last_used) < SESSION_IDLE)
            .map(|s| auth::hash_token(&s.token))
            .collect()
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
        .layer(Extension(Arc::new(Sessions::default())))
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
    pub csrf: String,
    pub name: String,
    pub role: Role,
    pub tenant: Tenant,
}

impl Ctx {
    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }

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
        let (token, csrf, tenant_name) = sessions.touch(&session_id).ok_or_else(to_login)?;
        let identity = state
            .store
            .api_token_identity(&auth::hash_token(&token))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some((name, role)) = identity else {
            sessions.remove(&session_id);
            return Err(to_login());
        };
        let role = Role::parse(&role).ok_or_else(to_login)?;
        let tenant = state
            .store
            .tenant_by_name(&tenant_name)
            .await
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(to_login)?;
        Ok(Ctx {
            session_id,
            token,
            csrf,
            name,
            role,
            tenant,
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
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl ApiReply {
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
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(body)
        .map_err(|e| internal(format!("building API request: {e}")))?;
    let api = crate::mgmt::routes().with_state(state.clone());
    let response = match api.oneshot(request).await {
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
    pub fn parse(body: &[u8]) -> FormFields {
        FormFields(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

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
