//! `GET /metrics` in Prometheus text format (docs/management-api.md "Metrics"): HTTP requests
//! and their latency by route class, DDI polls, artifact bytes served, and actions and rollouts
//! by status. The numbers cover every tenant, so only a cross-tenant management token (any role)
//! may read them.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::{self, Role};
use crate::error::ApiError;
use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    method: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// The server's metrics; one per process (replicas each export their own HTTP numbers, and
/// the same database counts).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ClassLabels, Histogram>,
    ddi_polls: Counter,
    artifact_bytes: Counter,
    actions: Family<StatusLabels, Gauge>,
    rollouts: Family<StatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keel");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class, method and status code",
            requests.clone(),
        );
        let latency = Family::<ClassLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to ~16 s.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 16,
            ))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route class",
            latency.clone(),
        );
        let ddi_polls = Counter::default();
        registry.register(
            "ddi_polls",
            "DDI base polls (GET /{tenant}/controller/v1/{controller})",
            ddi_polls.clone(),
        );
        let artifact_bytes = Counter::default();
        registry.register(
            "artifact_bytes_served",
            "Bytes of artifact downloads answered 200 or 206 (as declared by Content-Length)",
            artifact_bytes.clone(),
        );
        let actions = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "actions",
            "Actions (deployments to devices) by status, all tenants",
            actions.clone(),
        );
        let rollouts = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "rollouts",
            "Rollouts by status, all tenants",
            rollouts.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            ddi_polls,
            artifact_bytes,
            actions,
            rollouts,
        }
    }
}

/// Which part of the API a path belongs to (a bounded label set, not the path itself).
fn class_of(path: &str) -> &'static str {
    if path.starts_with("/rest/") {
        "mgmt"
    } else if path.starts_with("/ui") {
        "dashboard"
    } else if path == "/metrics" {
        "metrics"
    } else if path.contains("/controller/v1/") {
        "ddi"
    } else if path.contains("/tuf/") {
        "tuf"
    } else {
        "other"
    }
}

/// Middleware: counts and times every request.
pub async fn track(
    State(state): State<std::sync::Arc<AppState>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let started = Instant::now();
    let class = class_of(request.uri().path());
    let method = request.method().clone();
    // Without allocating: `{tenant}/controller/v1/{id}` is the poll, a DDI path with an
    // `artifacts` segment a download.
    let path = request.uri().path();
    let mut segments = path.trim_matches('/').split('/');
    let is_poll = method == Method::GET
        && segments.nth(1) == Some("controller")
        && segments.next() == Some("v1")
        && segments.next().is_some()
        && segments.next().is_none();
    let is_download = class == "ddi" && path.split('/').any(|s| s == "artifacts");
    let response = next.run(request).await;
    let m = &state.metrics;
    let code = response.status().as_u16();
    m.requests
        .get_or_create(&RequestLabels {
            class,
            method: method.to_string(),
            code,
        })
        .inc();
    m.latency
        .get_or_create(&ClassLabels { class })
        .observe(started.elapsed().as_secs_f64());
    if is_poll && response.status().is_success() {
        m.ddi_polls.inc();
    }
    if is_download && matches!(code, 200 | 206) {
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(bytes) = declared {
            m.artifact_bytes.inc_by(bytes);
        }
    }
    response
}

/// `GET /metrics`.
pub async fn export(
    State(state): State<std::sync::Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = auth::management_role(&state.store, &headers, Role::Viewer).await?;
    if !caller.is_cross_tenant() {
        return Err(ApiError::Forbidden(
            "/metrics counts every tenant: use a cross-tenant token (keel-server create-token --cross-tenant --role viewer)".into(),
        ));
    }
    let m = &state.metrics;
    for (family, counts) in [
        (&m.actions, state.store.action_status_counts().await?),
        (&m.rollouts, state.store.rollout_status_counts().await?),
    ] {
        family.clear();
        for (status, count) in counts {
            family.get_or_create(&StatusLabels { status }).set(count);
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
