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
        /// The attributes of the booted slot, sent after the poll (if changed or requested).
        attributes: BTreeMap<String, String>,
    },
    /// The server asks to cancel an action; its stop id is fetched.
    FetchingCancel,
    /// The cancellation of `stop_id` is acknowledged.
    AckingCancel {
        /// The action being cancelled.
        stop_id: String,
    },
    /// The offered deployment is fetched.
    FetchingDeployment,
    /// The server is told that the last install of the offered action was interrupted.
    ReportingInterruption {
        /// The offered deployment, considered once the feedback is answered.
        offer: Offer,
    },
    /// The artifact is checked against TUF metadata (accepted without a `[tuf]` section).
    CheckingTuf {
        /// The offered deployment.
        offer: Offer,
        /// Appended to the 0 % message: which attempt this is after interruptions (empty on
        /// the first).
        retry: String,
    },
    /// An offer that cannot be installed is closed as failed (`message` goes to the log).
    Refusing {
        /// The action.
        action_id: String,
        /// Why it is refused.
        message: String,
    },
    /// `proceeding` 0 % goes out before the download.
    Announcing {
        /// The action.
        action_id: String,
    },
    /// The artifact is downloaded and installed.
    Installing {
        /// The action.
        action_id: String,
    },
    /// `proceeding` 100 % ("rebooting") goes out.
    ReportingInstalled {
        /// The action.
        action_id: String,
    },
    /// After a failed install, the failure it recorded goes out (best effort).
    ReportingFailure {
        /// The action.
        action_id: String,
        /// The install error.
        message: String,
    },
    /// The failure is closed from the error itself (it was not recorded, or not accepted).
    ClosingFailure {
        /// The action.
        action_id: String,
        /// The install error, sent as the feedback details.
        message: String,
    },
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
    /// The state file and bootloader were reconciled.
    Reconciled {
        /// The state file after reconciling.
        record: AgentState,
        /// The slot that runs.
        booted: SlotId,
        /// The booted slot is on trial (reconciled as testing, or the loader says TESTING).
        testing: bool,
    },
    /// Confirmed; the state file as confirm left it.
    Confirmed {
        /// The state file after confirming.
        record: AgentState,
    },
    /// The health check failed (reason given); the slot stays on trial.
    HealthCheckFailed(String),
    /// Feedback sent: accepted (`true`), action already closed (`false`, 410), or failed
    /// (`None`, only for [`Request::TryFeedback`]).
    Feedback(Option<bool>),
    /// Records of the booted slot's factory images, hashed just now.
    FactoryImages(BTreeMap<String, SlotImage>),
    /// The controller resource was read.
    Polled(Poll),
    /// The cancellation was fetched.
    CancelFetched {
        /// The action to cancel.
        stop_id: String,
    },
    /// The `deploymentBase` was fetched.
    Offered(Offer),
    /// `Err`: why the artifact is refused.
    TufChecked(Result<(), String>),
    /// The action's bundle was installed and activated.
    Installed {
        /// The slot it was written to.
        target: SlotId,
        /// What `keel-chunked` images took from where (empty without such images).
        summary: String,
    },
    /// Another agent process holds the lock: not this action's failure.
    InstallBusy(String),
    /// The install failed; the state file as it left it.
    InstallFailed {
        /// The install error.
        message: String,
        /// The state file after the failed install.
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
    /// Link of the `cancelAction` resource, if offered.
    pub cancel: Option<String>,
    /// Link of the `deploymentBase` resource, if offered.
    pub deployment: Option<String>,
}

/// A `deploymentBase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The DDI action id.
    pub action_id: String,
    /// `deployment.update = skip`.
    pub skip: bool,
    /// The `.swu` artifact: (file name, size).
    pub artifact: Option<(String, u64)>,
}

/// A `deploymentBase` feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The action.
    pub action_id: String,
    /// `proceeding` or `closed`.
    pub execution: &'static str,
    /// `none`, `success` or `failure`.
    pub finished: &'static str,
    /// `(cnt, of)`: progress as a fraction, in percent for installs (`of` = 100).
    pub progress: Option<(u64, u64)>,
    /// One line for the server's action history.
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
    /// Reconcile the state file with the bootloader.
    Reconcile,
    /// Health check; if it passes, confirm the booted slot.
    Confirm,
    /// Feedback whose failure ends the cycle.
    Feedback(Feedback),
    /// Feedback whose failure is an answer, not an error.
    TryFeedback(Feedback),
    /// Hash the booted slot's factory images the record has no record of.
    FactoryImages,
    /// GET the controller resource.
    Poll,
    /// GET the `cancelAction` link.
    FetchCancel(String),
    /// Acknowledge the cancellation of the action (stop id) with `closed`/`success`.
    AckCancel(String),
    /// GET the `deploymentBase` link.
    FetchDeployment(String),
    /// Check the offered artifact against TUF metadata.
    CheckTuf,
    /// Download and install the offered artifact.
    Install {
        /// The action it belongs to.
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
        /// The attributes of the booted slot.
        attributes: BTreeMap<String, String>,
        /// The server asked for them (`configData` link): sent even if unchanged.
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

/// What a cycle takes from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `max_interrupted_attempts`.
    pub max_interrupted_attempts: u32,
    /// Sleep after the cycle unless the server says otherwise.
    pub poll: Duration,
}

/// One cycle in progress: its state and what it has learnt so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Where the cycle is.
    pub state: State,
    /// What it was started with.
    pub settings: Settings,
    /// The state file as the cycle knows it.
    pub record: AgentState,
    /// The slot that runs (known after reconciling).
    pub booted: SlotId,
    /// The action of the transaction found at the start (installed, awaiting reboot or test).
    pub pending_action: Option<String>,
    /// How long to sleep after the cycle: `poll`, or the server's `config.polling.sleep`.
    pub sleep: Duration,
    /// What the cycle did so far, for the log.
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
