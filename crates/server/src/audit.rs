//! The audit log: who changed what, from where, and every refused credential (docs/security.md).
//!
//! Records are written by one background task in batches (one transaction each), like device
//! reports. A change is answered only after its record committed, so a client that saw a 2xx can
//! find the change in the log; refusals (401/403) are queued without waiting and dropped, with a
//! warning, when the queue is full, so a flood of bad tokens cannot stall the server on audit
//! writes.
//!
//! Who is acting is learnt without a second token lookup: the layer opens a per-request scope,
//! and `auth` notes the caller and the tenant it acts on into it as it authenticates.

use crate::auth::Caller;
use crate::store::{now_ms, AuditRecord, Store};
use crate::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records queued at most; refusals beyond it are dropped (and counted).
const QUEUE: usize = 8192;
/// Records committed by one transaction at most.
const BATCH: usize = 512;

struct Job {
    record: AuditRecord,
    committed: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// The handle every handler records through.
pub struct AuditLog {
    queue: tokio::sync::mpsc::Sender<Job>,
    dropped: AtomicU64,
}

impl AuditLog {
    /// Starts the writer task (it ends when the last handle is dropped).
    pub fn start(store: Store) -> AuditLog {
        let (queue, jobs) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, jobs));
        AuditLog {
            queue,
            dropped: AtomicU64::new(0),
        }
    }

    /// Records a change and waits until it is committed; `false` if it could not be written.
    pub async fn record(&self, record: AuditRecord) -> bool {
        let (done, committed) = tokio::sync::oneshot::channel();
        let job = Job {
            record,
            committed: Some(done),
        };
        if self.queue.send(job).await.is_err() {
            return false;
        }
        committed.await.unwrap_or(false)
    }

    /// Queues a record without waiting; drops it when the queue is full.
    pub fn record_later(&self, record: AuditRecord) {
        let job = Job {
            record,
            committed: None,
        };
        if self.queue.try_send(job).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "audit log: queue full, {dropped} refusal records dropped so far (a flood of bad credentials?)"
                );
            }
        }
    }

    /// Refusal records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_loop(store: Store, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let records: Vec<AuditRecord> = batch.iter().map(|j| j.record.clone()).collect();
        let mut ok = false;
        for attempt in 0..3u32 {
            match store.append_audit(&records).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(err) => {
                    tracing::error!(
                        "audit log: writing {} records failed (attempt {}): {err}",
                        records.len(),
                        attempt + 1
                    );
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        for job in batch {
            if let Some(done) = job.committed {
                let _ = done.send(ok);
            }
        }
    }
}

/// A new record stamped with the current time.
pub fn entry(
    tenant_id: Option<i64>,
    actor: impl Into<String>,
    action: impl Into<String>,
    object: impl Into<String>,
    status: StatusCode,
    address: Option<String>,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: now_ms(),
        tenant_id,
        actor: actor.into(),
        action: action.into(),
        object: object.into(),
        status: i64::from(status.as_u16()),
        address,
        detail: None,
    }
}

// ---------- the per-request scope ----------

#[derive(Default, Clone)]
struct Scope {
    actor: Option<String>,
    tenant_id: Option<i64>,
}

tokio::task_local! {
    static SCOPE: RefCell<Scope>;
}

/// Notes the authenticated caller of the current request (no-op outside an audited request).
pub fn note_caller(caller: &Caller) {
    let _ = SCOPE.try_with(|scope| {
        let mut scope = scope.borrow_mut();
        scope.actor = Some(caller.name.clone());
        if scope.tenant_id.is_none() {
            scope.tenant_id = caller.tenant_id;
        }
    });
}

/// Notes the tenant the current request acts on.
pub fn note_tenant(tenant_id: i64) {
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().tenant_id = Some(tenant_id));
}

/// The address a request came from: the TCP peer, or for the dashboard's in-process API calls
/// the address its own request came from.
#[derive(Clone, Debug)]
pub struct ClientAddress(pub String);

/// The client address of a request: [`ClientAddress`] if set, else the TCP peer's IP.
pub fn client_address(extensions: &axum::http::Extensions) -> Option<String> {
    if let Some(ClientAddress(address)) = extensions.get::<ClientAddress>() {
        return Some(address.clone());
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_string())
}

/// Extractor for the client address of a dashboard request.
pub struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_address(&parts.extensions)))
    }
}

fn reads_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Runs `next` inside a scope and returns the response with what the handlers noted.
async fn scoped(request: Request, next: Next) -> (Response, Scope) {
    SCOPE
        .scope(RefCell::new(Scope::default()), async move {
            let response = next.run(request).await;
            let scope = SCOPE.with(|scope| scope.borrow().clone());
            (response, scope)
        })
        .await
}

/// Route layer of the management API: records every change (awaited) and every refused token or
/// foreign-tenant request (queued).
pub async fn management(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_string());
    let address = client_address(request.extensions());
    let (response, scope) = scoped(request, next).await;
    let status = response.status();
    let actor = scope.actor.unwrap_or_else(|| "(no valid token)".into());
    let record = |action: String| {
        entry(
            scope.tenant_id,
            actor.clone(),
            action,
            &path,
            status,
            address.clone(),
        )
    };
    match status {
        StatusCode::UNAUTHORIZED => state
            .audit
            .record_later(record(format!("token rejected: {method} {route}"))),
        StatusCode::FORBIDDEN => state
            .audit
            .record_later(record(format!("forbidden: {method} {route}"))),
        StatusCode::TOO_MANY_REQUESTS => {}
        _ if reads_only(&method) => {}
        _ => {
            if !state
                .audit
                .record(record(format!("{method} {route}")))
                .await
            {
                tracing::error!("audit log: could not record {method} {path} by {actor}");
            }
        }
    }
    response
}

/// Route layer of the DDI device API: records refused device and gateway tokens.
pub async fn device(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let address = client_address(request.extensions());
    let (response, scope) = scoped(request, next).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        state.audit.record_later(entry(
            scope.tenant_id,
            "(device)",
            format!("device token rejected: {method}"),
            path,
            StatusCode::UNAUTHORIZED,
            address,
        ));
    }
    response
}
