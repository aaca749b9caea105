//! hawkBit DDI client (`keel-agent run`), against keel-server or Eclipse hawkBit.
//!
//! One cycle ([`cycle`]):
//! 1. Reconcile the state file with this boot. A test boot of the new slot is confirmed
//!    after the configured health check; the final result of the action that was open before
//!    the reboot (success, rolled back, failed) is sent as `closed` feedback once, and marked
//!    reported in the state file only after the server accepted it (200, or 410 = already
//!    closed). An install of an action that was interrupted before activation (power loss,
//!    crash, kill) is not a failure: the action stays open; when the poll offers it again,
//!    `proceeding` feedback says which attempt was cut off and it is installed again (closed as
//!    failed only after `max_interrupted_attempts` interrupted attempts); when the poll no
//!    longer offers it (cancelled, replaced), the interrupted attempt is forgotten.
//! 2. Poll `GET {url}/{tenant}/controller/v1/{id}`. A `cancelAction` is acknowledged when no
//!    install of it is under way. A `deploymentBase` is fetched, its `.swu` artifact streamed
//!    straight into [`Agent::install`] (resumable HTTP), with `proceeding` feedback carrying
//!    progress; a failed install is reported `closed`/`failure` at once; a successful one
//!    `proceeding` ("installed, rebooting") and then `reboot_command` runs.
//! 3. Sleep for the server's `config.polling.sleep` (`HH:MM:SS`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_formats::names::attributes as names;
use serde_json::{json, Value};

use crate::agent::{run_health_check, Agent, AgentError};
use crate::chunks::{PackSource, SlotStream};
use crate::config::DdiConfig;
use crate::config::SlotId;
use crate::install::InstallOptions;
use crate::reconcile::Verdict;
use crate::source::{http_agent, HttpReader, ResumePolicy, SourceError};
use crate::state::Outcome;
use crate::state::SlotImage;

#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error("no [ddi] section in the configuration")]
    NotConfigured,
    #[error("DDI {method} {url}: {message}")]
    Http {
        method: &'static str,
        url: String,
        message: String,
    },
    #[error("DDI response from {url}: {message}")]
    Response { url: String, message: String },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// A DDI session for one controller id.
pub struct DdiClient {
    http: ureq::Agent,
    base: String,
    auth: Option<String>,
    /// The slot attributes last accepted by the server (sent again only when they change, when
    /// the server asks, or by a new process).
    sent_attributes: RefCell<Option<BTreeMap<String, String>>>,
}

/// What one cycle did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleEvent {
    Confirmed(String),
    Reported {
        action_id: String,
        outcome: Outcome,
    },
    Installed {
        action_id: String,
    },
    InstallFailed {
        action_id: String,
        message: String,
    },
    CancelAcknowledged(String),
    HealthCheckFailed(String),
    /// The `attempt`-th install of the action was interrupted before activation; it was
    /// reported as `proceeding` and is installed again when offered (at most `limit` attempts).
    Interrupted {
        action_id: String,
        attempt: u32,
        limit: u32,
    },
    /// The server no longer offers the action whose install was interrupted (cancelled or
    /// replaced): the interrupted attempt is forgotten.
    InterruptedDropped(String),
    Idle,
}

/// One line of `keel-agent run`'s log per event.
impl std::fmt::Display for CycleEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CycleEvent::Confirmed(slot) => write!(f, "slot {slot} confirmed after its test boot"),
            CycleEvent::Reported { action_id, outcome } => {
                write!(f, "action {action_id}: reported {} to the server", outcome.as_str())
            }
            CycleEvent::Installed { action_id } => write!(
                f,
                "action {action_id}: installed; reboot to test the new slot"
            ),
            CycleEvent::InstallFailed { action_id, message } => {
                write!(f, "action {action_id}: install failed: {message}")
            }
            CycleEvent::CancelAcknowledged(action_id) => {
                write!(f, "action {action_id}: cancellation acknowledged")
            }
            CycleEvent::HealthCheckFailed(message) => write!(
                f,
                "health check failed, slot left on trial (the next boot rolls back): {message}"
            ),
            CycleEvent::Interrupted {
                action_id,
                attempt,
                limit,
            } => write!(
                f,
                "action {action_id}: install attempt {attempt} of at most {limit} was interrupted before activation; installing again when offered"
            ),
            CycleEvent::InterruptedDropped(action_id) => write!(
                f,
                "action {action_id}: no longer offered by the server; its interrupted install is forgotten"
            ),
            CycleEvent::Idle => f.write_str("nothing to do"),
        }
    }
}

fn parse_sleep(text: &str) -> Option<Duration> {
    let mut parts = text.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(Duration::from_secs(h * 3600 + m * 60 + s))
}

impl DdiClient {
    pub fn new(config: &DdiConfig) -> DdiClient {
        let auth = match (&config.target_token, &config.gateway_token) {
            (Some(t), _) => Some(format!("TargetToken {t}")),
            (None, Some(g)) => Some(format!("GatewayToken {g}")),
            (None, None) => None,
        };
        DdiClient {
            http: http_agent(),
            base: format!(
                "{}/{}/controller/v1/{}",
                config.url.trim_end_matches('/'),
                config.tenant,
                config.controller_id
            ),
            auth,
            sent_attributes: RefCell::new(None),
        }
    }

    /// `PUT configData` (merge): the booted slot's attributes.
    fn send_attributes(&self, attributes: &BTreeMap<String, String>) -> Result<(), DdiError> {
        let url = format!("{}/configData", self.base);
        let mut request = self
            .http
            .put(&url)
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let body = json!({ "mode": "merge", "data": attributes });
        request
            .send(body.to_string().as_bytes())
            .map_err(|e| DdiError::Http {
                method: "PUT",
                url,
                message: e.to_string(),
            })?;
        *self.sent_attributes.borrow_mut() = Some(attributes.clone());
        Ok(())
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.auth
            .iter()
            .map(|a| ("Authorization".to_string(), a.clone()))
            .collect()
    }

    fn get_json(&self, url: &str) -> Result<Value, DdiError> {
        let mut request = self.http.get(url).header("Accept", "application/hal+json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let err = |message: String| DdiError::Http {
            method: "GET",
            url: url.to_string(),
            message,
        };
        let mut response = request.call().map_err(|e| err(e.to_string()))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&body).map_err(|e| DdiError::Response {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// POST feedback; `Ok(true)` when accepted, `Ok(false)` when the action is already closed
    /// (410): either way there is nothing left to send.
    fn post_feedback(&self, url: &str, body: &Value) -> Result<bool, DdiError> {
        let mut request = self
            .http
            .post(url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let response = request
            .send(body.to_string().as_bytes())
            .map_err(|e| DdiError::Http {
                method: "POST",
                url: url.to_string(),
                message: e.to_string(),
            })?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            410 => Ok(false),
            status => Err(DdiError::Http {
                method: "POST",
                url: url.to_string(),
                message: format!("status {status}"),
            }),
        }
    }

    pub fn feedback(
        &self,
        action_id: &str,
        execution: &str,
        finished: &str,
        progress: Option<(u64, u64)>,
        details: &str,
    ) -> Result<bool, DdiError> {
        let mut result = json!({ "finished": finished });
        if let Some((cnt, of)) = progress {
            result["progress"] = json!({ "cnt": cnt, "of": of });
        }
        let body = json!({
            "status": { "execution": execution, "result": result, "details": [details] }
        });
        self.post_feedback(
            &format!("{}/deploymentBase/{action_id}/feedback", self.base),
            &body,
        )
    }

    fn cancel_feedback(&self, action_id: &str) -> Result<bool, DdiError> {
        let body = json!({
            "status": { "execution": "closed", "result": { "finished": "success" }, "details": ["canceled by keel-agent"] }
        });
        self.post_feedback(
            &format!("{}/cancelAction/{action_id}/feedback", self.base),
            &body,
        )
    }
}

/// Counts bytes pulled through it (for progress feedback).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Send the final result of the last transaction if it belongs to a server action and was
/// not reported yet.
fn report_result(agent: &mut Agent, client: &DdiClient) -> Result<Option<CycleEvent>, DdiError> {
    let mut state = agent.load_state()?;
    let Some(result) = state.last_result.clone() else {
        return Ok(None);
    };
    let Some(action_id) = result.action_id.clone().filter(|_| !result.reported) else {
        return Ok(None);
    };
    let finished = if result.outcome == Outcome::Success {
        "success"
    } else {
        "failure"
    };
    let details = format!(
        "keel-agent: {} (slot {}): {}",
        result.outcome.as_str(),
        result.target_slot,
        result.message
    );
    client.feedback(&action_id, "closed", finished, None, &details)?;
    if let Some(r) = state.last_result.as_mut() {
        r.reported = true;
    }
    agent.store_state(&state)?;
    Ok(Some(CycleEvent::Reported {
        action_id,
        outcome: result.outcome,
    }))
}

/// Tell the server, which offers the action again, that an install of it was interrupted before
/// activation (once per interruption). The action was not closed; it is installed again.
fn report_interruption(
    agent: &mut Agent,
    client: &DdiClient,
    booted: SlotId,
) -> Result<Option<CycleEvent>, DdiError> {
    let mut state = agent.load_state()?;
    let Some(record) = state.interrupted.clone().filter(|i| !i.reported) else {
        return Ok(None);
    };
    let limit = agent.config.max_interrupted_attempts;
    let details = format!(
        "keel-agent: install attempt {} of {limit} was interrupted (power loss or crash) before \
         slot {} was activated; slot {booted} still runs; installing again: {}",
        record.attempts, record.target_slot, record.message
    );
    let open = client.feedback(&record.action_id, "proceeding", "none", None, &details)?;
    if open {
        if let Some(i) = state.interrupted.as_mut() {
            i.reported = true;
        }
    } else {
        // 410: the action was closed meanwhile; nothing to resume.
        state.interrupted = None;
    }
    agent.store_state(&state)?;
    Ok(Some(CycleEvent::Interrupted {
        action_id: record.action_id,
        attempt: record.attempts,
        limit,
    }))
}

/// Forget an interrupted install unless it belongs to `offered`, the action the server offers
/// now (none: cancelled, or replaced by another action). Returns the forgotten action id.
fn drop_interrupted(agent: &mut Agent, offered: Option<&str>) -> Result<Option<String>, DdiError> {
    let mut state = agent.load_state()?;
    let Some(record) = state.interrupted.as_ref() else {
        return Ok(None);
    };
    if offered == Some(record.action_id.as_str()) {
        return Ok(None);
    }
    let dropped = record.action_id.clone();
    state.interrupted = None;
    agent.store_state(&state)?;
    Ok(Some(dropped))
}

/// One poll cycle; returns what happened and how long to sleep.
pub fn cycle(
    agent: &mut Agent,
    client: &DdiClient,
) -> Result<(Vec<CycleEvent>, Duration), DdiError> {
    let mut events = Vec::new();
    let (state, booted, view, verdict) = agent.reconcile()?;
    let pending_action = state.transaction.as_ref().and_then(|t| t.action_id.clone());
    // A test boot of the new slot; with GRUB (RAUC's scheme) every boot is one.
    if verdict == Verdict::Testing || view.ustate == crate::bootloader::UState::Testing {
        let health = agent.config.health_check.clone();
        match health.as_deref().map(run_health_check).unwrap_or(Ok(())) {
            Ok(()) => {
                agent.confirm(None)?;
                events.push(CycleEvent::Confirmed(booted.to_string()));
            }
            Err(e) => {
                // Leave the slot in TESTING: the next boot falls back and that is reported.
                if let Some(id) = &pending_action {
                    let _ = client.feedback(id, "proceeding", "none", None, &e.to_string());
                }
                events.push(CycleEvent::HealthCheckFailed(e.to_string()));
                if let Some(reboot) = agent.config.reboot_command.clone() {
                    let _ = run_health_check(&reboot);
                }
                return Ok((events, Duration::from_secs(agent.ddi_poll_secs())));
            }
        }
    }
    if let Some(event) = report_result(agent, client)? {
        events.push(event);
    }
    let attributes = slot_attributes(agent, booted)?;

    let poll = client.get_json(&client.base)?;
    let sleep = poll["config"]["polling"]["sleep"]
        .as_str()
        .and_then(parse_sleep)
        .unwrap_or(Duration::from_secs(agent.ddi_poll_secs()));
    let links = &poll["_links"];
    let requested = links["configData"]["href"].is_string();
    if requested || client.sent_attributes.borrow().as_ref() != Some(&attributes) {
        // Not fatal: the server then offers full bundles rather than deltas.
        if let Err(e) = client.send_attributes(&attributes) {
            eprintln!("keel-agent: {e}");
        }
    }
    if let Some(href) = links["cancelAction"]["href"].as_str() {
        let cancel = client.get_json(href)?;
        let stop_id = cancel["cancelAction"]["stopId"]
            .as_str()
            .map(str::to_string)
            .or_else(|| cancel["id"].as_str().map(str::to_string))
            .unwrap_or_default();
        // An action already installed and awaiting its reboot cannot be taken back here.
        if pending_action.as_deref() != Some(stop_id.as_str()) {
            client.cancel_feedback(&stop_id)?;
            let cancelled_interrupted = agent
                .load_state()?
                .interrupted
                .is_some_and(|i| i.action_id == stop_id);
            if cancelled_interrupted {
                drop_interrupted(agent, None)?;
                events.push(CycleEvent::InterruptedDropped(stop_id.clone()));
            }
            events.push(CycleEvent::CancelAcknowledged(stop_id));
        }
        return Ok((events, sleep));
    }
    let Some(href) = links["deploymentBase"]["href"].as_str() else {
        if let Some(dropped) = drop_interrupted(agent, None)? {
            events.push(CycleEvent::InterruptedDropped(dropped));
        }
        if events.is_empty() {
            events.push(CycleEvent::Idle);
        }
        return Ok((events, sleep));
    };
    let deployment = client.get_json(href)?;
    let action_id = match &deployment["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(DdiError::Response {
                url: href.to_string(),
                message: "deploymentBase without id".into(),
            })
        }
    };
    if pending_action.as_deref() == Some(action_id.as_str()) {
        // Installed already; waiting for the reboot / test boot of this very action.
        return Ok((events, sleep));
    }
    if let Some(dropped) = drop_interrupted(agent, Some(&action_id))? {
        events.push(CycleEvent::InterruptedDropped(dropped));
    }
    // Offered again: say that the last attempt was cut off (a cancelled or replaced action is
    // not told, its record is dropped above or with the cancel).
    if let Some(event) = report_interruption(agent, client, booted)? {
        events.push(event);
    }
    // Earlier attempts of this action that were cut off before activation.
    let retry = agent
        .load_state()?
        .interrupted
        .map(|i| {
            format!(
                " (attempt {} of {}, the previous one was interrupted)",
                i.attempts.saturating_add(1),
                agent.config.max_interrupted_attempts
            )
        })
        .unwrap_or_default();
    if deployment["deployment"]["update"].as_str() == Some("skip") {
        return Ok((events, sleep));
    }
    let found = deployment["deployment"]["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let artifacts = c["artifacts"].as_array().cloned().unwrap_or_default();
            artifacts
                .clone()
                .into_iter()
                .map(move |a| (a, artifacts.clone()))
        })
        .find(|(a, _)| a["filename"].as_str().is_some_and(|f| f.ends_with(".swu")));
    // The other artifacts of the bundle's software module: packs of keel-chunked images.
    let packs = PackSource::Named {
        urls: found
            .iter()
            .flat_map(|(_, siblings)| siblings)
            .filter_map(|a| Some((a["filename"].as_str()?.to_string(), download_url(a)?)))
            .collect(),
        headers: client.headers(),
    };
    let artifact = found.map(|(a, _)| a);
    let Some(artifact) = artifact else {
        client.feedback(
            &action_id,
            "closed",
            "failure",
            None,
            "no .swu artifact in the deployment",
        )?;
        drop_interrupted(agent, None)?;
        events.push(CycleEvent::InstallFailed {
            action_id,
            message: "no .swu artifact".into(),
        });
        return Ok((events, sleep));
    };
    let url = download_url(&artifact).unwrap_or_default();
    let size = artifact["size"].as_u64().unwrap_or(0);
    let filename = artifact["filename"]
        .as_str()
        .unwrap_or("bundle.swu")
        .to_string();
    // TUF (docs/tuf.md): only a current TUF target with the announced length and hashes is installed.
    let tuf_target = match crate::tuf::target_for_deployment(
        agent,
        &client.http,
        &client.headers(),
        &client.base,
        &deployment,
        &artifact,
    ) {
        Ok(target) => target,
        Err(e) => {
            let message = format!("refusing {filename}: {e}");
            client.feedback(&action_id, "closed", "failure", None, &message)?;
            drop_interrupted(agent, None)?;
            events.push(CycleEvent::InstallFailed { action_id, message });
            return Ok((events, sleep));
        }
    };
    client.feedback(
        &action_id,
        "proceeding",
        "none",
        Some((0, 100)),
        &format!(
            "downloading and installing {filename} ({size} bytes) into the inactive slot{retry}"
        ),
    )?;

    let result = HttpReader::open(
        client.http.clone(),
        &url,
        client.headers(),
        ResumePolicy::default(),
    )
    .map_err(|e| (false, e.to_string()))
    .and_then(|reader| {
        crate::tuf::verified_stream(reader, tuf_target).map_err(|e| (false, e.to_string()))
    })
    .and_then(|reader| {
        let count = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: reader,
            count: count.clone(),
        };
        let mut last_reported = 0u64;
        let mut progress = |_: u64, _: u64| {
            if size == 0 {
                return;
            }
            let percent = count.load(Ordering::Relaxed).saturating_mul(100) / size;
            if percent >= last_reported + 25 && percent < 100 {
                last_reported = percent;
                let _ = client.feedback(
                    &action_id,
                    "proceeding",
                    "none",
                    Some((percent, 100)),
                    &format!("installing {filename}: {percent}%"),
                );
            }
        };
        agent
            .install(
                counting,
                InstallOptions {
                    action_id: Some(action_id.clone()),
                    progress: Some(&mut progress),
                    packs,
                    ..Default::default()
                },
            )
            .map_err(|e| {
                let busy = matches!(e, crate::install::InstallError::Agent(AgentError::Busy(_)));
                (busy, e.to_string())
            })
    });
    match result {
        Ok(report) => {
            client.feedback(
                &action_id,
                "proceeding",
                "none",
                Some((100, 100)),
                &format!(
                    "installed into slot {}; rebooting to test it (the result follows after the reboot){}",
                    report.target,
                    chunk_summary(&report.chunked)
                ),
            )?;
            events.push(CycleEvent::Installed {
                action_id: action_id.clone(),
            });
            if let Some(reboot) = agent.config.reboot_command.clone() {
                let _ = run_health_check(&reboot);
            }
        }
        Err((true, message)) => {
            // Another agent process is installing or confirming: not this action's failure;
            // the deployment is offered again at the next poll.
            events.push(CycleEvent::InstallFailed { action_id, message });
        }
        Err((false, message)) => {
            // The agent already recorded the failure; report it now (and mark it reported).
            let _ = report_result(agent, client);
            let state = agent.load_state()?;
            let reported = state
                .last_result
                .as_ref()
                .is_some_and(|r| r.reported && r.action_id.as_deref() == Some(action_id.as_str()));
            if !reported {
                client.feedback(&action_id, "closed", "failure", None, &message)?;
            }
            events.push(CycleEvent::InstallFailed { action_id, message });
        }
    }
    Ok((events, sleep))
}

/// What keel-chunked images cost, for the operator (empty without such images).
fn chunk_summary(c: &crate::install::ChunkedStats) -> String {
    if c.image_bytes == 0 {
        return String::new();
    }
    format!(
        "; keel-chunked: fetched {} bytes in {} requests for {} image bytes ({} chunks from the booted slot, {} already in place, {} fetched)",
        c.fetched_bytes, c.requests, c.image_bytes, c.seed_chunks, c.kept_chunks, c.fetched_chunks
    )
}

fn download_url(artifact: &Value) -> Option<String> {
    artifact["_links"]["download-http"]["href"]
        .as_str()
        .or(artifact["_links"]["download"]["href"].as_str())
        .map(str::to_string)
}

/// DDI attribute naming the `ZSTD_versionNumber()` the agent recompresses zstd frames with
/// (a keel-delta entry's `zstd-frames` property must equal it).
pub const ZSTD_VERSION_ATTRIBUTE: &str = names::DELTA_ZSTD;

/// The booted slot as DDI attributes (docs/agent.md): `keel.slot`, `keel.version`,
/// `keel.delta.zstd` (the zstd version for framed deltas), and per
/// target `keel.slot.<target>.sha256` / `.size` of the image it holds. Targets the state file
/// has no record of are hashed once up to `factory_image_sizes` (when configured) and recorded.
pub fn slot_attributes(
    agent: &Agent,
    booted: SlotId,
) -> Result<BTreeMap<String, String>, AgentError> {
    let mut state = agent.load_state()?;
    let mut learned = false;
    for (target, &size) in &agent.config.factory_image_sizes {
        let recorded = state
            .slots
            .get(&booted)
            .is_some_and(|r| r.contains_key(target));
        let Some(path) = agent.config.slots.get(booted).targets.get(target) else {
            continue;
        };
        if recorded || state.transaction.is_some() {
            continue;
        }
        match hash_prefix(agent, path, size) {
            Ok(sha256) => {
                state.slots.entry(booted).or_default().insert(
                    target.clone(),
                    SlotImage {
                        sha256,
                        size,
                        version: None,
                    },
                );
                learned = true;
            }
            Err(e) => eprintln!(
                "keel-agent: hashing {} ({size} bytes of the factory image): {e}",
                path.display()
            ),
        }
    }
    if learned {
        agent.store_state(&state)?;
    }
    let mut attributes = BTreeMap::new();
    attributes.insert(names::SLOT.to_string(), booted.to_string());
    // The server offers a delta that recompresses zstd frames only to this exact zstd version.
    attributes.insert(
        ZSTD_VERSION_ATTRIBUTE.to_string(),
        keel_delta::frames::zstd_version().to_string(),
    );
    if let Some(records) = state.slots.get(&booted) {
        for (target, image) in records {
            attributes.insert(
                names::slot_target(target, names::SHA256),
                image.sha256.clone(),
            );
            attributes.insert(
                names::slot_target(target, names::SIZE),
                image.size.to_string(),
            );
        }
        if let Some(version) = records.values().find_map(|r| r.version.clone()) {
            attributes.insert(names::VERSION.to_string(), version);
        }
    }
    Ok(attributes)
}

fn hash_prefix(agent: &Agent, path: &std::path::Path, size: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut stream = SlotStream::open(agent.storage.clone(), path)?.take(size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        total += n as u64;
    }
    if total != size {
        return Err(std::io::Error::other(format!(
            "slot holds {total} bytes, fewer than {size}"
        )));
    }
    Ok(keel_formats::swdesc::hex(&hasher.finalize()))
}

impl Agent {
    fn ddi_poll_secs(&self) -> u64 {
        self.config.ddi.as_ref().map_or(300, |d| d.poll_secs)
    }
}

/// `keel-agent run`: cycles until an error-free `once` cycle, or forever.
pub fn run(agent: &mut Agent, once: bool) -> Result<(), DdiError> {
    let config = agent.config.ddi.clone().ok_or(DdiError::NotConfigured)?;
    let client = DdiClient::new(&config);
    loop {
        let sleep = match cycle(agent, &client) {
            Ok((events, sleep)) => {
                for event in events {
                    eprintln!("keel-agent: {event}");
                }
                sleep
            }
            Err(e) if once => return Err(e),
            Err(e) => {
                eprintln!("keel-agent: {e}");
                Duration::from_secs(config.poll_secs.min(60))
            }
        };
        if once {
            return Ok(());
        }
        std::thread::sleep(sleep);
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_sleep, CycleEvent};
    use crate::state::Outcome;
    use std::time::Duration;

    #[test]
    fn cycle_events_read_as_sentences_not_rust_debug() {
        let events = [
            (
                CycleEvent::Installed {
                    action_id: "1".into(),
                },
                "action 1: installed; reboot to test the new slot",
            ),
            (
                CycleEvent::Reported {
                    action_id: "2".into(),
                    outcome: Outcome::RolledBack,
                },
                "action 2: reported rolled back to the server",
            ),
            (CycleEvent::Idle, "nothing to do"),
        ];
        for (event, text) in events {
            assert_eq!(event.to_string(), text);
        }
        let all = [
            CycleEvent::Confirmed("B".into()),
            CycleEvent::InstallFailed {
                action_id: "3".into(),
                message: "image rootfs: sha256 mismatch".into(),
            },
            CycleEvent::CancelAcknowledged("4".into()),
            CycleEvent::HealthCheckFailed("exit status 1".into()),
            CycleEvent::Interrupted {
                action_id: "5".into(),
                attempt: 1,
                limit: 3,
            },
            CycleEvent::InterruptedDropped("6".into()),
        ];
        for event in all {
            let text = event.to_string();
            assert!(!text.contains(['{', '"']), "{text}");
            assert!(text.chars().next().unwrap().is_lowercase(), "{text}");
        }
    }

    #[test]
    fn sleep_is_hh_mm_ss() {
        assert_eq!(parse_sleep("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(parse_sleep("01:00:07"), Some(Duration::from_secs(3607)));
        assert_eq!(parse_sleep("5m"), None);
        assert_eq!(parse_sleep("00:x:00"), None);
    }
}
