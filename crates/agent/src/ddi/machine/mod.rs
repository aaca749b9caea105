//! One DDI cycle as a state machine: [`Machine::step`] maps (state, event) to the next state, the
//! effects to perform and the next [`Request`], without I/O; the driver (`driver.rs`) answers
//! each request with an [`Event`] and performs the effects. So every path of a cycle is
//! unit-tested as data (`machine_tests.rs`).
//!
//! The machine keeps the state file's contents (`record`) for the whole cycle: it is read once
//! (by the reconcile that starts the cycle) and written back ([`Effect::Store`]) only when a
//! transition changed it. Two steps own the state file while they run and hand back what they
//! left: confirm (under the agent lock) and install (a transaction of its own; after a failed
//! one the driver reads the file again to report the failure it recorded).
//!
//! ```text
//! Reconciling ─▶ [Confirming] ─▶ [ReportingResult] ─▶ Describing ─▶ Polling
//! Polling ─▶ Done (idle)
//!         ─▶ FetchingCancel ─▶ [AckingCancel] ─▶ Done
//!         ─▶ FetchingDeployment ─▶ [ReportingInterruption] ─▶ CheckingTuf | Refusing | Done (skip)
//! CheckingTuf ─▶ Announcing ─▶ Installing ─▶ ReportingInstalled ─▶ Done (reboot)
//!             ─▶ Refusing ─▶ Done                ─▶ [ReportingFailure] ─▶ [ClosingFailure] ─▶ Done
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use super::CycleEvent;
use crate::config::SlotId;
use crate::state::{AgentState, SlotImage};

/// What the cycle waits for (the answer to the request it made last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The state file and the bootloader are read and reconciled.
    Reconciling,
    /// The booted slot is on its test boot: health check, then confirm.
    Confirming,
    /// The final result of the action open before the reboot goes out as `closed`.
    ReportingResult,
    /// The booted slot's factory images are hashed (once: then they are recorded).
    Describing,
    /// GET of the controller resource.
    Polling {
        attributes: BTreeMap<String, String>,
    },
    /// The server asks to cancel an action; its stop id is fetched.
    FetchingCancel,
    /// The cancellation of `stop_id` is acknowledged.
    AckingCancel { stop_id: String },
    /// The offered deployment is fetched.
    FetchingDeployment,
    /// The server is told that the last install of the offered action was interrupted.
    ReportingInterruption { offer: Offer },
    /// The artifact is checked against TUF metadata (accepted without a `[tuf]` section).
    CheckingTuf { offer: Offer, retry: String },
    /// An offer that cannot be installed is closed as failed (`message` goes to the log).
    Refusing { action_id: String, message: String },
    /// `proceeding` 0 % goes out before the download.
    Announcing { action_id: String },
    /// The artifact is downloaded and installed.
    Installing { action_id: String },
    /// `proceeding` 100 % ("rebooting") goes out.
    ReportingInstalled { action_id: String },
    /// After a failed install, the failure it recorded goes out (best effort).
    ReportingFailure { action_id: String, message: String },
    /// The failure is closed from the error itself (it was not recorded, or not accepted).
    ClosingFailure { action_id: String, message: String },
    /// The cycle is over.
    Done,
}

/// Lower-case words, for logs.
impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Reconciling => f.write_str("reconciling"),
            State::Confirming => f.write_str("confirming the test boot"),
            State::ReportingResult => f.write_str("reporting the last result"),
            State::Describing => f.write_str("hashing factory images"),
            State::Polling { .. } => f.write_str("polling"),
            State::FetchingCancel => f.write_str("fetching the cancellation"),
            State::AckingCancel { stop_id } => {
                write!(f, "acknowledging the cancellation of action {stop_id}")
            }
            State::FetchingDeployment => f.write_str("fetching the deployment"),
            State::ReportingInterruption { offer } => write!(
                f,
                "reporting the interrupted install of action {}",
                offer.action_id
            ),
            State::CheckingTuf { offer, .. } => {
                write!(f, "checking action {} against TUF", offer.action_id)
            }
            State::Refusing { action_id, .. } => write!(f, "refusing action {action_id}"),
            State::Announcing { action_id } => {
                write!(f, "announcing the install of action {action_id}")
            }
            State::Installing { action_id } => write!(f, "installing action {action_id}"),
            State::ReportingInstalled { action_id } => {
                write!(f, "reporting action {action_id} installed")
            }
            State::ReportingFailure { action_id, .. } | State::ClosingFailure { action_id, .. } => {
                write!(f, "reporting the failure of action {action_id}")
            }
            State::Done => f.write_str("done"),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Reconciled {
        record: AgentState,
        booted: SlotId,
        /// The booted slot is on trial (reconciled as testing, or the loader says TESTING).
        testing: bool,
    },
    /// Confirmed; the state file as confirm left it.
    Confirmed {
        record: AgentState,
    },
    HealthCheckFailed(String),
    /// Feedback sent: accepted (`true`), action already closed (`false`, 410), or failed
    /// (`None`, only for [`Request::TryFeedback`]).
    Feedback(Option<bool>),
    /// Records of the booted slot's factory images, hashed just now.
    FactoryImages(BTreeMap<String, SlotImage>),
    Polled(Poll),
    CancelFetched {
        stop_id: String,
    },
    Offered(Offer),
    /// `Err`: why the artifact is refused.
    TufChecked(Result<(), String>),
    Installed {
        target: SlotId,
        summary: String,
    },
    /// Another agent process holds the lock: not this action's failure.
    InstallBusy(String),
    /// The install failed; the state file as it left it.
    InstallFailed {
        message: String,
        record: AgentState,
    },
}

/// What the controller resource offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poll {
    /// `config.polling.sleep`.
    pub sleep: Option<Duration>,
    /// The server asks for the attributes (`configData` link).
    pub attributes_requested: bool,
    pub cancel: Option<String>,
    pub deployment: Option<String>,
}

/// A `deploymentBase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub action_id: String,
    /// `deployment.update = skip`.
    pub skip: bool,
    /// The `.swu` artifact: (file name, size).
    pub artifact: Option<(String, u64)>,
}

/// A `deploymentBase` feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub action_id: String,
    /// `proceeding` or `closed`.
    pub execution: &'static str,
    /// `none`, `success` or `failure`.
    pub finished: &'static str,
    pub progress: Option<(u64, u64)>,
    pub details: String,
}

impl Feedback {
    pub(super) fn proceeding(
        action_id: &str,
        progress: Option<(u64, u64)>,
        details: String,
    ) -> Feedback {
        Feedback {
            action_id: action_id.to_string(),
            execution: "proceeding",
            finished: "none",
            progress,
            details,
        }
    }

    pub(super) fn failure(action_id: &str, details: String) -> Feedback {
        Feedback {
            action_id: action_id.to_string(),
            execution: "closed",
            finished: "failure",
            progress: None,
            details,
        }
    }
}

/// I/O whose answer is the next [`Event`]; an error of it ends the cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Reconcile,
    /// Health check; if it passes, confirm the booted slot.
    Confirm,
    Feedback(Feedback),
    /// Feedback whose failure is an answer, not an error.
    TryFeedback(Feedback),
    /// Hash the booted slot's factory images the record has no record of.
    FactoryImages,
    Poll,
    FetchCancel(String),
    AckCancel(String),
    FetchDeployment(String),
    CheckTuf,
    Install {
        action_id: String,
    },
}

/// I/O without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write [`Machine::record`] to the state file.
    Store,
    /// Feedback whose failure does not matter.
    Notify(Feedback),
    /// `PUT configData` if the attributes changed since last accepted, or `requested`.
    SendAttributes {
        attributes: BTreeMap<String, String>,
        requested: bool,
    },
    /// Run `reboot_command` (if configured).
    Reboot,
}

/// What a transition asks of the driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Performed in order, before the request.
    pub effects: Vec<Effect>,
    /// `None` once the cycle is done.
    pub request: Option<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_interrupted_attempts: u32,
    /// Sleep after the cycle unless the server says otherwise.
    pub poll: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub state: State,
    pub settings: Settings,
    /// The state file as the cycle knows it.
    pub record: AgentState,
    pub booted: SlotId,
    /// The action of the transaction found at the start (installed, awaiting reboot or test).
    pub pending_action: Option<String>,
    pub sleep: Duration,
    pub events: Vec<CycleEvent>,
}

impl Machine {
    /// A new cycle; the first request is [`Request::Reconcile`].
    pub fn start(settings: Settings) -> (Machine, Request) {
        let machine = Machine {
            state: State::Reconciling,
            settings,
            record: AgentState::default(),
            booted: SlotId::A,
            pending_action: None,
            sleep: settings.poll,
            events: Vec::new(),
        };
        (machine, Request::Reconcile)
    }

    /// What the cycle did and how long to sleep.
    pub fn finish(self) -> (Vec<CycleEvent>, Duration) {
        (self.events, self.sleep)
    }
}

mod step;

#[cfg(test)]
mod tests;
