//! The hawkBit DDI device API (docs/ddi.md is the contract).

use crate::auth::{self, Device};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::store::{now_ms, Action, ActionStatus, Artifact, NewStatus, Transition};
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// DDI request bodies are small JSON documents.
pub const DDI_BODY_LIMIT: usize = 64 * 1024;
/// hawkBit's quota of attributes per target.
const MAX_ATTRIBUTES: usize = 100;

/// The DDI device API under `/{tenant}/controller/v1/{controllerId}` (docs/ddi.md): poll,
/// deployment, feedback, cancel, configData, installedBase and artifacts (TUF: `tuf::routes`).
pub fn routes() -> Router<Arc<AppState>> {
    let base = "/{tenant}/controller/v1/{controller_id}";
    Router::new()
        .route(base, get(poll))
        .route(
            &format!("{base}/deploymentBase/{{action_id}}"),
            get(deployment_base),
        )
        .route(
            &format!("{base}/deploymentBase/{{action_id}}/feedback"),
            post(deployment_feedback),
        )
        .route(
            &format!("{base}/cancelAction/{{action_id}}"),
            get(cancel_action),
        )
        .route(
            &format!("{base}/cancelAction/{{action_id}}/feedback"),
            post(cancel_feedback),
        )
        .route(&format!("{base}/configData"), put(config_data))
        .route(
            &format!("{base}/installedBase/{{action_id}}"),
            get(installed_base),
        )
        .route(
            &format!("{base}/softwaremodules/{{module_id}}/artifacts"),
            get(list_artifacts),
        )
        .route(
            &format!("{base}/softwaremodules/{{module_id}}/artifacts/{{filename}}"),
            get(download_artifact),
        )
        .layer(DefaultBodyLimit::max(DDI_BODY_LIMIT))
}

/// A JSON response with hawkBit's content type.
fn hal(value: Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/hal+json"),
    );
    response
}

/// Percent-encodes one path segment for the links we hand out.
use keel_tuf::store::percent_encode as encode_segment;

fn controller_base(
    state: &AppState,
    headers: &HeaderMap,
    tenant: &str,
    controller_id: &str,
) -> String {
    format!(
        "{}/{}/controller/v1/{}",
        state.base_url(headers),
        encode_segment(tenant),
        encode_segment(controller_id)
    )
}

fn href(url: String) -> Value {
    json!({ "href": url })
}

/// An action of the authenticated device; anything else is reported exactly like a missing id.
async fn device_action(state: &AppState, device: &Device, action_id: i64) -> ApiResult<Action> {
    match state.store.action(action_id).await? {
        Some(action) if action.target_id == device.target.id => Ok(action),
        _ => Err(ApiError::not_found("action")),
    }
}

// ---------- download / update handling and maintenance windows ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    Skip,
    Attempt,
    Forced,
}

impl Handling {
    fn as_str(self) -> &'static str {
        match self {
            Handling::Skip => "skip",
            Handling::Attempt => "attempt",
            Handling::Forced => "forced",
        }
    }
}

/// Parses hawkBit's maintenance-window timezone: `Z`, `+HH:MM` or `-HH:MM`.
pub fn parse_timezone(text: &str) -> Option<chrono::FixedOffset> {
    if text == "Z" || text.is_empty() {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Parses a maintenance schedule (Quartz-style cron, as hawkBit: seconds first, `?` allowed,
/// weekdays 1 = Sunday).
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(schedule)
        .with_seconds_optional()
        .with_alternative_weekdays()
        .parse()
        .map_err(|e| format!("invalid maintenance schedule {schedule:?}: {e}"))
}

/// Whether a maintenance window (a schedule start plus duration) contains `now_ms`.
pub fn window_open(schedule: &str, duration_secs: i64, timezone: &str, now_ms: i64) -> bool {
    let (Ok(cron), Some(offset)) = (parse_schedule(schedule), parse_timezone(timezone)) else {
        return false;
    };
    let Some(now) = chrono::DateTime::from_timestamp_millis(now_ms) else {
        return false;
    };
    let now = now.with_timezone(&offset);
    // The window is open if some start lies in (now - duration, now].
    let search_from = now - chrono::Duration::seconds(duration_secs.max(0));
    match cron.find_next_occurrence(&search_from, false) {
        Ok(start) => start <= now,
        Err(_) => false,
    }
}

/// When the next maintenance window opens (ms), if the schedule has a next start.
pub fn next_window_start(schedule: &str, timezone: &str, now_ms: i64) -> Option<i64> {
    let (Ok(cron), Some(offset)) = (parse_schedule(schedule), parse_timezone(timezone)) else {
        return None;
    };
    let now = chrono::DateTime::from_timestamp_millis(now_ms)?.with_timezone(&offset);
    cron.find_next_occurrence(&now, false)
        .ok()
        .map(|start| start.timestamp_millis())
}

/// The poll interval to suggest: the configured one, shortened before a closed maintenance window
/// so the device sees it open in time (hawkBit: time to the window / 3, at least 1 s).
fn poll_sleep(action: Option<&Action>, configured: u32, now: i64) -> u32 {
    let Some(action) = action else {
        return configured;
    };
    let (Some(schedule), Some(duration), Some(tz)) = (
        &action.mw_schedule,
        action.mw_duration_secs,
        &action.mw_timezone,
    ) else {
        return configured;
    };
    if action.status == ActionStatus::Canceling || window_open(schedule, duration, tz, now) {
        return configured;
    }
    match next_window_start(schedule, tz, now) {
        Some(start) if start > now => {
            let until = u32::try_from((start - now) / 1000 / 3).unwrap_or(u32::MAX);
            configured.min(until.max(1))
        }
        _ => configured,
    }
}

struct Instructions {
    download: Handling,
    update: Handling,
    maintenance: Option<bool>,
}

fn instructions(action: &Action, now: i64) -> Instructions {
    let forced = match action.action_type.as_str() {
        "forced" | "downloadonly" => true,
        "timeforced" => action.forcetime.is_some_and(|t| now >= t),
        _ => false,
    };
    let download = if forced {
        Handling::Forced
    } else {
        Handling::Attempt
    };
    let maintenance = match (
        &action.mw_schedule,
        action.mw_duration_secs,
        &action.mw_timezone,
    ) {
        (Some(schedule), Some(duration), Some(tz)) => {
            Some(window_open(schedule, duration, tz, now))
        }
        _ => None,
    };
    let update = if action.action_type == "downloadonly" {
        Handling::Skip
    } else {
        match maintenance {
            Some(false) => Handling::Skip,
            _ => download,
        }
    };
    Instructions {
        download,
        update,
        maintenance,
    }
}

/// hawkBit's `c=` value: changes when what the device should do changes.
fn action_hash(action: &Action, now: i64) -> i32 {
    let i = instructions(action, now);
    let text = format!(
        "{}:{}:{}:{}:{:?}",
        action.id,
        action.status,
        i.download.as_str(),
        i.update.as_str(),
        i.maintenance
    );
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

// ---------- poll ----------

async fn poll(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, true).await?;
    let now = now_ms();
    if let Ok(mut polls) = state.polls.lock() {
        polls.insert(device.target.id, (now, peer.ip().to_string()));
    }
    let base = controller_base(&state, &headers, &tenant, &controller_id);
    let mut links = Map::new();
    let current = state.store.current_action(device.target.id).await?;
    let sleep = poll_sleep(current.as_ref(), state.config.poll_interval, now);
    if let Some(action) = current {
        if action.status == ActionStatus::Canceling {
            links.insert(
                "cancelAction".into(),
                href(format!("{base}/cancelAction/{}", action.id)),
            );
        } else {
            links.insert(
                "deploymentBase".into(),
                href(format!(
                    "{base}/deploymentBase/{}?c={}",
                    action.id,
                    action_hash(&action, now)
                )),
            );
        }
    }
    if let Some(installed) = device.target.installed_action_id {
        links.insert(
            "installedBase".into(),
            href(format!("{base}/installedBase/{installed}")),
        );
    }
    if device.target.request_attributes != 0 {
        links.insert("configData".into(), href(format!("{base}/configData")));
    }
    Ok(hal(json!({
        "config": { "polling": { "sleep": crate::format_poll_interval(sleep) } },
        "_links": links,
    })))
}

// ---------- deployment ----------

#[derive(Deserialize)]
struct DeploymentQuery {
    #[serde(rename = "actionHistory")]
    action_history: Option<i64>,
}

fn artifact_json(base: &str, module_id: i64, artifact: &Artifact) -> Value {
    let download = format!(
        "{base}/softwaremodules/{module_id}/artifacts/{}",
        encode_segment(&artifact.filename)
    );
    let md5sum = format!("{download}.MD5SUM");
    json!({
        "filename": artifact.filename,
        "hashes": { "sha1": artifact.sha1, "md5": artifact.md5, "sha256": artifact.sha256 },
        "size": artifact.size,
        "_links": {
            "download": href(download.clone()),
            "download-http": href(download),
            "md5sum": href(md5sum.clone()),
            "md5sum-http": href(md5sum),
        }
    })
}

async fn deployment_json(
    state: &AppState,
    base: &str,
    action: &Action,
    history: Option<i64>,
    key: &str,
    device: &Device,
) -> ApiResult<Value> {
    // Delta / dynamic / full bundle for what the device reported its slot holds (variants.rs).
    let report = crate::variants::DeviceReport::from_attributes(&device.target.attributes);
    let now = now_ms();
    let i = instructions(action, now);
    let mut chunks = Vec::new();
    for module in state.store.set_modules(action.ds_id).await? {
        let all = state.store.artifacts(module.id).await?;
        let variants = state.store.artifact_variants(module.id).await?;
        let artifacts: Vec<Value> = crate::variants::offer(&all, &variants, &report)
            .into_iter()
            .map(|artifact| artifact_json(base, module.id, artifact))
            .collect();
        chunks.push(json!({
            "part": module.module_type,
            "version": module.version,
            "name": module.name,
            "artifacts": artifacts,
        }));
    }
    let mut deployment = json!({
        "download": i.download.as_str(),
        "update": i.update.as_str(),
        "chunks": chunks,
    });
    if let Some(open) = i.maintenance {
        deployment["maintenanceWindow"] = json!(if open { "available" } else { "unavailable" });
    }
    let mut body = json!({ "id": action.id.to_string(), key: deployment });
    if let Some(count) = history {
        let entries = state.store.action_history(action.id).await?;
        let mut messages: Vec<String> = Vec::new();
        for entry in entries.iter().rev() {
            let texts: Vec<String> = serde_json::from_str(&entry.messages).unwrap_or_default();
            for text in texts.into_iter().rev() {
                messages.push(text);
            }
        }
        if count >= 0 {
            messages.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        }
        body["actionHistory"] =
            json!({ "status": action.status.as_str().to_uppercase(), "messages": messages });
    }
    Ok(body)
}

async fn deployment_base(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, action_id)): ApiPath<(String, String, i64)>,
    ApiQuery(query): ApiQuery<DeploymentQuery>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let action = device_action(&state, &device, action_id).await?;
    if matches!(
        action.status,
        ActionStatus::Canceling | ActionStatus::Canceled
    ) {
        return Err(ApiError::not_found("deployment"));
    }
    let base = controller_base(&state, &headers, &tenant, &controller_id);
    let body = deployment_json(
        &state,
        &base,
        &action,
        query.action_history,
        "deployment",
        &device,
    )
    .await?;
    if action.active != 0 {
        state
            .store
            .note_once(
                action.id,
                ActionStatus::Retrieved,
                "keel-server: target retrieved the deployment",
            )
            .await?;
    }
    Ok(hal(body))
}

async fn installed_base(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, action_id)): ApiPath<(String, String, i64)>,
    ApiQuery(query): ApiQuery<DeploymentQuery>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let action = device_action(&state, &device, action_id).await?;
    if action.active != 0 || action.status != ActionStatus::Finished {
        return Err(ApiError::not_found("installed action"));
    }
    let base = controller_base(&state, &headers, &tenant, &controller_id);
    Ok(hal(deployment_json(
        &state,
        &base,
        &action,
        query.action_history,
        "deployment",
        &device,
    )
    .await?))
}

// ---------- feedback ----------

/// DDI `status.execution`: where the device is with the action (mapped as hawkBit's
/// `generateUpdateStatus` does, docs/ddi.md).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// Done; `result.finished` says how. Closes the action (`finished`, or `error` on `failure`).
    Closed,
    /// Working on it: the action stays `running`.
    Proceeding,
    /// The device canceled it: closes the action `canceled` (on a cancel, only a `warning` entry).
    Canceled,
    /// Waiting to start (e.g. for its maintenance window): the action stays `running`.
    Scheduled,
    /// The device refuses the update (`warning`, still open), or a cancel (back to `running`).
    Rejected,
    /// Working on it again after an interruption: the action stays `running`.
    Resumed,
    /// Downloading: the action becomes `download`.
    Download,
    /// Download complete: the action becomes `downloaded`.
    Downloaded,
}

/// DDI `status.result.finished`: the outcome, meaningful with `closed`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    /// Installed (or canceled) successfully.
    Success,
    /// Failed: the action closes `error`.
    Failure,
    /// No outcome yet; with `closed`, taken as success.
    None,
}

/// DDI `status.result.progress`: how far the device is, in steps of its own choosing.
#[derive(Debug, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub cnt: Option<i64>,
    /// Steps in all.
    pub of: Option<i64>,
}

/// DDI `status.result`.
#[derive(Debug, Deserialize)]
pub struct FeedbackResult {
    /// The outcome (required).
    pub finished: Finished,
    /// Optional progress, stored in the history entry.
    pub progress: Option<Progress>,
}

/// DDI `status`: what the device reports.
#[derive(Debug, Deserialize)]
pub struct FeedbackStatus {
    /// Where the device is (required).
    pub execution: Execution,
    /// Outcome and progress (required).
    pub result: FeedbackResult,
    /// The device's own result code, stored in the history.
    pub code: Option<i64>,
    /// Free-text lines, stored in the history (may be empty).
    #[serde(default)]
    pub details: Vec<String>,
}

/// `DdiActionFeedback`; unknown fields (SWUpdate's `id`, `time`) are ignored.
#[derive(Debug, Deserialize)]
pub struct Feedback {
    /// When it happened on the device (ms since 1970); `None`: the server's time of receipt.
    pub timestamp: Option<i64>,
    /// The report.
    pub status: FeedbackStatus,
}

/// hawkBit keeps at most 50 messages per status entry.
const MAX_MESSAGES: usize = 50;
const MAX_MESSAGE_LEN: usize = 512;

fn status_entry(status: ActionStatus, feedback: &Feedback) -> NewStatus {
    let mut messages: Vec<String> = feedback
        .status
        .details
        .iter()
        .take(MAX_MESSAGES)
        .map(|m| m.chars().take(MAX_MESSAGE_LEN).collect())
        .collect();
    if let Some(code) = feedback.status.code {
        messages.push(format!("Device reported status code: {code}"));
    }
    let progress = feedback.status.result.progress.as_ref();
    NewStatus {
        status,
        messages,
        code: feedback.status.code,
        progress_cnt: progress.and_then(|p| p.cnt),
        progress_of: progress.and_then(|p| p.of),
        reported_at: feedback.timestamp,
    }
}

async fn deployment_feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, action_id)): ApiPath<(String, String, i64)>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> ApiResult<StatusCode> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let action = device_action(&state, &device, action_id).await?;
    if action.active == 0 {
        return Err(ApiError::Gone(format!(
            "action {action_id} is closed ({})",
            action.status
        )));
    }
    let (status, transition) = match (feedback.status.execution, feedback.status.result.finished) {
        (Execution::Closed, Finished::Failure) => (
            ActionStatus::Error,
            Transition::Close {
                status: ActionStatus::Error,
                installed: false,
            },
        ),
        (Execution::Closed, _) => (
            ActionStatus::Finished,
            Transition::Close {
                status: ActionStatus::Finished,
                installed: true,
            },
        ),
        (Execution::Canceled, _) => (
            ActionStatus::Canceled,
            Transition::Close {
                status: ActionStatus::Canceled,
                installed: false,
            },
        ),
        (Execution::Rejected, _) => (
            ActionStatus::Warning,
            Transition::Open(ActionStatus::Warning),
        ),
        (Execution::Download, _) => (
            ActionStatus::Download,
            Transition::Open(ActionStatus::Download),
        ),
        (Execution::Downloaded, _) => (
            ActionStatus::Downloaded,
            Transition::Open(ActionStatus::Downloaded),
        ),
        (Execution::Proceeding | Execution::Scheduled | Execution::Resumed, _) => (
            ActionStatus::Running,
            Transition::Open(ActionStatus::Running),
        ),
    };
    if !state
        .store
        .report(&action, None, &status_entry(status, &feedback), transition)
        .await?
    {
        return Err(ApiError::Gone(format!("action {action_id} is closed")));
    }
    Ok(StatusCode::OK)
}

// ---------- cancel ----------

async fn cancel_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, action_id)): ApiPath<(String, String, i64)>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let action = device_action(&state, &device, action_id).await?;
    if !matches!(
        action.status,
        ActionStatus::Canceling | ActionStatus::Canceled
    ) {
        return Err(ApiError::not_found("cancel action"));
    }
    if action.active != 0 {
        state
            .store
            .note_once(
                action.id,
                ActionStatus::Retrieved,
                "keel-server: target retrieved the cancel request",
            )
            .await?;
    }
    let id = action.id.to_string();
    Ok(hal(json!({ "id": id, "cancelAction": { "stopId": id } })))
}

async fn cancel_feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, action_id)): ApiPath<(String, String, i64)>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> ApiResult<StatusCode> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let action = device_action(&state, &device, action_id).await?;
    if action.active == 0 {
        return Err(ApiError::Gone(format!(
            "action {action_id} is closed ({})",
            action.status
        )));
    }
    if action.status != ActionStatus::Canceling {
        return Err(ApiError::MethodNotAllowed(format!(
            "action {action_id} is not being canceled"
        )));
    }
    // hawkBit's generateActionCancelStatus mapping.
    let (status, transition) = match (feedback.status.execution, feedback.status.result.finished) {
        (Execution::Closed, Finished::Failure) => (
            ActionStatus::Error,
            Transition::Close {
                status: ActionStatus::Error,
                installed: false,
            },
        ),
        (Execution::Closed, _) => (
            ActionStatus::Canceled,
            Transition::Close {
                status: ActionStatus::Canceled,
                installed: false,
            },
        ),
        (Execution::Rejected, _) => (
            ActionStatus::CancelRejected,
            Transition::Force(ActionStatus::Running),
        ),
        (Execution::Canceled, _) => (ActionStatus::Warning, Transition::None),
        _ => (ActionStatus::Running, Transition::None),
    };
    if !state
        .store
        .report(
            &action,
            Some(ActionStatus::Canceling),
            &status_entry(status, &feedback),
            transition,
        )
        .await?
    {
        return Err(ApiError::Gone(format!(
            "action {action_id} is no longer being canceled"
        )));
    }
    Ok(StatusCode::OK)
}

// ---------- configData ----------

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum UpdateMode {
    #[default]
    Merge,
    Replace,
    Remove,
}

#[derive(Debug, Deserialize)]
struct ConfigData {
    #[serde(default)]
    mode: Option<UpdateMode>,
    data: BTreeMap<String, Value>,
}

fn attribute_value(key: &str, value: &Value) -> ApiResult<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "attribute {key:?}: value must be a string"
            )))
        }
    };
    if key.is_empty() || key.len() > 128 || text.len() > 1024 {
        return Err(ApiError::bad_request(format!(
            "attribute {key:?}: key 1..128 and value up to 1024 bytes"
        )));
    }
    Ok(text)
}

async fn config_data(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ConfigData>,
) -> ApiResult<StatusCode> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    let mut attributes: BTreeMap<String, String> =
        serde_json::from_str(&device.target.attributes).unwrap_or_default();
    match body.mode.unwrap_or_default() {
        UpdateMode::Merge => {
            for (key, value) in &body.data {
                attributes.insert(key.clone(), attribute_value(key, value)?);
            }
        }
        UpdateMode::Replace => {
            attributes.clear();
            for (key, value) in &body.data {
                attributes.insert(key.clone(), attribute_value(key, value)?);
            }
        }
        UpdateMode::Remove => {
            for key in body.data.keys() {
                attributes.remove(key);
            }
        }
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(ApiError::bad_request(format!(
            "more than {MAX_ATTRIBUTES} attributes"
        )));
    }
    let text = serde_json::to_string(&attributes).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_target_attributes(device.target.id, &text)
        .await?;
    Ok(StatusCode::OK)
}

// ---------- artifacts ----------

async fn visible_module(state: &AppState, device: &Device, module_id: i64) -> ApiResult<()> {
    let exists = state
        .store
        .module(device.tenant.id, module_id)
        .await?
        .is_some();
    if exists
        && state
            .store
            .module_visible_to_target(&device.target, module_id)
            .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found("software module"))
    }
}

async fn list_artifacts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, module_id)): ApiPath<(String, String, i64)>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    visible_module(&state, &device, module_id).await?;
    let base = controller_base(&state, &headers, &tenant, &controller_id);
    let list: Vec<Value> = state
        .store
        .artifacts(module_id)
        .await?
        .iter()
        .map(|a| artifact_json(&base, module_id, a))
        .collect();
    Ok(hal(Value::Array(list)))
}

fn etag_matches(if_match: &str, sha1: &str) -> bool {
    if_match.split(',').any(|candidate| {
        let candidate = candidate.trim().trim_start_matches("W/").trim_matches('"');
        candidate == "*" || candidate.eq_ignore_ascii_case(sha1)
    })
}

async fn download_artifact(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, module_id, filename)): ApiPath<(String, String, i64, String)>,
) -> ApiResult<Response> {
    let device = auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    visible_module(&state, &device, module_id).await?;
    let artifact = match state.store.artifact_by_name(module_id, &filename).await? {
        Some(artifact) => artifact,
        None => {
            let Some(name) = filename.strip_suffix(".MD5SUM") else {
                return Err(ApiError::not_found("artifact"));
            };
            let artifact = state
                .store
                .artifact_by_name(module_id, name)
                .await?
                .ok_or_else(|| ApiError::not_found("artifact"))?;
            let body = format!("{}  {}", artifact.md5, artifact.filename);
            return Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response());
        }
    };
    if let Some(if_match) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        if !etag_matches(if_match, &artifact.sha1) {
            return Err(ApiError::PreconditionFailed(
                "If-Match does not match the artifact's SHA-1".into(),
            ));
        }
    }
    let size = u64::try_from(artifact.size)
        .map_err(|_| ApiError::Internal("negative artifact size".into()))?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = crate::artifacts::parse_range(range_header, size)
        .map_err(|()| ApiError::RangeNotSatisfiable(size))?;
    if range.is_none() {
        // Like hawkBit, only full downloads are logged (a resumed download sends many ranges).
        if let Some(action) = state.store.current_action(device.target.id).await? {
            if state
                .store
                .set_modules(action.ds_id)
                .await?
                .iter()
                .any(|m| m.id == module_id)
            {
                state
                    .store
                    .note(
                        action.id,
                        ActionStatus::Download,
                        &format!("keel-server: target downloads {}", artifact.filename),
                    )
                    .await?;
            }
        }
    }
    let (status, start, length) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
        None => (StatusCode::OK, 0, size),
    };
    // HEAD is answered here (a pre-signed URL is valid for GET only).
    let body = if method == Method::HEAD {
        Body::empty()
    } else if let Some(url) = state.files.presigned_download_url(&artifact.sha256).await? {
        // The device passed the checks above; the object storage serves the bytes (and the
        // Range header, which HTTP clients send again to the redirect target).
        let mut response = StatusCode::FOUND.into_response();
        let h = response.headers_mut();
        h.insert(
            header::LOCATION,
            HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    } else {
        Body::from_stream(state.files.read(&artifact.sha256, start, length).await?)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", artifact.sha1)) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment;filename={}",
        encode_segment(&artifact.filename)
    )) {
        h.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if let Some(r) = range {
        if let Ok(content_range) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end))
        {
            h.insert(header::CONTENT_RANGE, content_range);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones() {
        assert_eq!(
            parse_timezone("+02:00").map(|o| o.local_minus_utc()),
            Some(7200)
        );
        assert_eq!(
            parse_timezone("-05:30").map(|o| o.local_minus_utc()),
            Some(-19800)
        );
        assert_eq!(parse_timezone("Z").map(|o| o.local_minus_utc()), Some(0));
        assert!(parse_timezone("02:00").is_none());
        assert!(parse_timezone("+99:00").is_none());
        assert!(parse_timezone("+").is_none());
    }

    #[test]
    fn maintenance_window() {
        // Every day at 03:00:00 UTC for one hour. 2026-01-01T03:30:00Z is inside, 05:00 outside.
        let inside = chrono::DateTime::parse_from_rfc3339("2026-01-01T03:30:00Z")
            .unwrap()
            .timestamp_millis();
        let outside = chrono::DateTime::parse_from_rfc3339("2026-01-01T05:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(window_open("0 0 3 * * ?", 3600, "Z", inside));
        assert!(!window_open("0 0 3 * * ?", 3600, "Z", outside));
        // The same window in UTC+02:00 local time opens at 01:00Z.
        let one_thirty = chrono::DateTime::parse_from_rfc3339("2026-01-01T01:30:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(window_open("0 0 3 * * ?", 3600, "+02:00", one_thirty));
        assert!(!window_open("not a cron", 3600, "Z", inside));
    }

    fn action_with_window(schedule: &str, duration: i64) -> Action {
        Action {
            id: 1,
            tenant_id: 1,
            target_id: 1,
            ds_id: 1,
            rollout_id: None,
            rollout_group_id: None,
            action_type: "forced".into(),
            forcetime: None,
            mw_schedule: Some(schedule.into()),
            mw_duration_secs: Some(duration),
            mw_timezone: Some("Z".into()),
            status: ActionStatus::Running,
            active: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn poll_sleep_shrinks_before_a_window() {
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis()
        };
        let daily_3am = action_with_window("0 0 3 * * ?", 3600);
        // 02:30: the window opens in 30 min: a third of it, 10 min, is above 5 min -> 5 min.
        assert_eq!(
            poll_sleep(Some(&daily_3am), 300, at("2026-01-01T02:30:00Z")),
            300
        );
        // 02:57: 3 min to go -> 60 s.
        assert_eq!(
            poll_sleep(Some(&daily_3am), 300, at("2026-01-01T02:57:00Z")),
            60
        );
        // 02:59:59 -> at least 1 s.
        assert_eq!(
            poll_sleep(Some(&daily_3am), 300, at("2026-01-01T02:59:59Z")),
            1
        );
        // Inside the window, or no window, or no action: the configured interval.
        assert_eq!(
            poll_sleep(Some(&daily_3am), 300, at("2026-01-01T03:10:00Z")),
            300
        );
        assert_eq!(poll_sleep(None, 300, at("2026-01-01T02:59:00Z")), 300);
        assert_eq!(
            next_window_start("0 0 3 * * ?", "Z", at("2026-01-01T02:00:00Z")),
            Some(at("2026-01-01T03:00:00Z"))
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("dev-1_a.b~"), "dev-1_a.b~");
        assert_eq!(encode_segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn if_match() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }
}
