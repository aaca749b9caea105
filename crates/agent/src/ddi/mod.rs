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
//!
//! The cycle is a state machine ([`machine`]: states, events, the pure transition function)
//! driven by a thin layer of I/O (`driver.rs`); `client.rs` speaks HTTP, `attributes.rs` says
//! what the server learns of the booted slot.

mod attributes;
mod client;
mod download;
mod driver;
pub mod machine;

use std::time::Duration;

pub use attributes::{slot_attributes, ZSTD_VERSION_ATTRIBUTE};
pub use client::DdiClient;
pub use driver::cycle;

use crate::agent::{Agent, AgentError};
use crate::source::SourceError;
use crate::state::Outcome;

/// Why a DDI cycle failed. `run` logs it and polls again (after at most a minute); `run --once`
/// returns it.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    /// `run` without a `[ddi]` section.
    #[error("no [ddi] section in the configuration")]
    NotConfigured,
    /// A request could not be sent or was answered with an unexpected status.
    #[error("DDI {method} {url}: {message}")]
    Http {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The transport error or the status.
        message: String,
    },
    /// A response body is not the JSON expected, or lacks what the cycle needs.
    #[error("DDI response from {url}: {message}")]
    Response {
        /// The URL that answered (empty when no request is to blame).
        url: String,
        /// What is wrong with the response.
        message: String,
    },
    /// Reconcile, confirm or the agent lock failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The artifact download could not be started.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What one cycle did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleEvent {
    /// The test boot of the slot (named) passed the health check and was confirmed.
    Confirmed(String),
    /// The final result of an action that was open before the reboot was accepted by the server.
    Reported {
        /// The action.
        action_id: String,
        /// Its result.
        outcome: Outcome,
    },
    /// The action's bundle was installed and activated; `reboot_command` runs next.
    Installed {
        /// The action.
        action_id: String,
    },
    /// The action's install failed and was reported `closed`/`failure`.
    InstallFailed {
        /// The action.
        action_id: String,
        /// The install error.
        message: String,
    },
    /// The cancellation of the action (named) was acknowledged.
    CancelAcknowledged(String),
    /// The health check of the test boot failed (reason given); the slot stays on trial and the
    /// next boot rolls back.
    HealthCheckFailed(String),
    /// The `attempt`-th install of the action was interrupted before activation; it was
    /// reported as `proceeding` and is installed again when offered (at most `limit` attempts).
    Interrupted {
        /// The action.
        action_id: String,
        /// This attempt's number (1, 2, ...).
        attempt: u32,
        /// `max_interrupted_attempts`.
        limit: u32,
    },
    /// The server no longer offers the action whose install was interrupted (cancelled or
    /// replaced): the interrupted attempt is forgotten.
    InterruptedDropped(String),
    /// The server had nothing for this device.
    Idle,
}

/// One line of `keel-agent run`'s log per event.
impl std::fmt::Display for CycleEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CycleEvent::Confirmed(slot) => write!(f, "slot {slot} confirmed after its test boot"),
            CycleEvent::Reported { action_id, outcome } => {
                write!(f, "action {action_id}: reported {outcome} to the server")
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

impl Agent {
    fn ddi_poll_secs(&self) -> u64 {
        self.config.ddi.as_ref().map_or(300, |d| d.poll_secs)
    }
}

/// `keel-agent run`: cycles until an error-free `once` cycle, or forever.
pub fn run(agent: &mut Agent, once: bool) -> Result<(), DdiError> {
    let config = agent.config.ddi.clone().ok_or(DdiError::NotConfigured)?;
    let client = DdiClient::new(&config, &agent.config.tls)?;
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
