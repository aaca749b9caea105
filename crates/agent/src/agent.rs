//! The agent: slot detection, status, confirm, and the post-boot bookkeeping around installs.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::bootloader::{self, BootError, BootView, Bootloader, UState};
use crate::config::{Config, Detect, SlotId};
use crate::io::{Environment, FsStorage, SharedStorage};
use crate::reconcile::{reconcile, Verdict};
use crate::state::{
    AgentState, InterruptedAction, LastResult, Outcome, Phase, StateError, Transaction,
};

/// Why a status, confirm or install could not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading or writing the bootloader environment failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Neither the kernel command line nor the bootloader environment tells which slot runs, or
    /// the command line names both.
    #[error("cannot tell which slot is booted: {0}")]
    Detect(String),
    /// The health check could not be started or exited non-zero; the slot stays in TESTING.
    #[error("health check `{command}` failed: {reason}")]
    HealthCheck {
        /// The command, as given to `sh -c`.
        command: String,
        /// The spawn error or the exit status.
        reason: String,
    },
    /// The command is refused in the current state (booted slot on trial or marked failed, an
    /// install in progress in this boot, the lock file cannot be opened); the text says why.
    #[error("{0}")]
    Refused(String),
    /// Another agent process holds the lock.
    #[error("{0}")]
    Busy(String),
}

/// Set while this process holds the agent lock (flock locks are per open file, so a second
/// open of the lock file in the same process would look like another agent).
static LOCK_HELD_HERE: AtomicBool = AtomicBool::new(false);

/// The held agent lock; released on drop.
pub struct AgentLock {
    _file: std::fs::File,
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        LOCK_HELD_HERE.store(false, Ordering::SeqCst);
    }
}

/// The agent, bound to one configuration and one storage.
pub struct Agent {
    /// The parsed configuration.
    pub config: Config,
    /// Where slots, environments and the state file are read and written.
    pub storage: SharedStorage,
    /// The real system or the storage layer alone (the simulator).
    pub env: Environment,
    /// The backend named by `[bootloader]`.
    pub bootloader: Box<dyn Bootloader>,
}

/// What `keel-agent status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The slot that runs.
    pub booted_slot: SlotId,
    /// The slot an install would write.
    pub other_slot: SlotId,
    /// `ebg`, `uboot` or `grub`.
    pub bootloader: &'static str,
    /// `OK`, `INSTALLED` (reboot to test), `TESTING` (needs confirm), `FAILED` (rolled back).
    pub ustate: UState,
    /// The slot the bootloader will start next, when the environment tells.
    pub next_boot: Option<SlotId>,
    /// `idle`, `installing`, `installed` (awaiting reboot), `testing` (awaiting confirm).
    pub state: &'static str,
    /// The transaction in flight, if any.
    pub pending: Option<Transaction>,
    /// The result of the last finished transaction.
    pub last_result: Option<LastResult>,
    /// A DDI action whose install was interrupted before activation and is installed again.
    pub interrupted: Option<InterruptedAction>,
    /// The outcome of the last update from removable media (`keel-agent media`).
    pub last_media: Option<crate::media::MediaResult>,
    /// Backend-specific lines (EBG: one per config copy; U-Boot and GRUB: the relevant variables).
    pub bootloader_details: std::collections::BTreeMap<String, String>,
}

/// What `confirm` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The test boot of a new slot was confirmed.
    Confirmed(SlotId),
    /// Nothing was being tested; the environment was (re)marked good anyway.
    AlreadyGood(SlotId),
}

impl Agent {
    /// An agent over `storage`, with the bootloader backend `config` names. Fails when the
    /// backend cannot be set up (such as an unreadable `fw_env.config`).
    pub fn new(
        config: Config,
        storage: SharedStorage,
        env: Environment,
    ) -> Result<Agent, AgentError> {
        let bootloader = bootloader::from_config(&config, storage.clone())?;
        Ok(Agent {
            config,
            storage,
            env,
            bootloader,
        })
    }

    /// The agent on the real file systems.
    pub fn open_os(config: Config) -> Result<Agent, AgentError> {
        Agent::new(config, FsStorage::shared(), Environment::Os)
    }

    /// Exclusive lock on `<state_dir>/lock` (flock) for the rest of an install or confirm, so
    /// two agent processes (say `run` and a manual `install`) never interleave. Only on real
    /// systems; the simulator runs one agent at a time.
    pub fn lock(&self) -> Result<Option<AgentLock>, AgentError> {
        if !self.env.has_other_processes() {
            return Ok(None);
        }
        match self.try_flock()? {
            Some(file) => {
                LOCK_HELD_HERE.store(true, Ordering::SeqCst);
                Ok(Some(AgentLock { _file: file }))
            }
            None => Err(AgentError::Busy(format!(
                "another keel-agent holds {} (install or confirm in progress)",
                self.config.state_dir.join("lock").display()
            ))),
        }
    }

    fn try_flock(&self) -> Result<Option<std::fs::File>, AgentError> {
        self.ensure_state_dir();
        let path = self.config.state_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| AgentError::Refused(format!("opening {}: {e}", path.display())))?;
        // flock(LOCK_EX | LOCK_NB): released by the kernel when the process dies.
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(AgentError::Refused(format!(
                "locking {}: {e}",
                path.display()
            ))),
        }
    }

    /// True if another agent process holds the lock right now (so an install recorded in
    /// this boot may really be running). Without one, such a record is left over from a
    /// crashed or killed agent.
    fn other_agent_running(&self) -> bool {
        if !self.env.has_other_processes() || LOCK_HELD_HERE.load(Ordering::SeqCst) {
            return false;
        }
        matches!(self.try_flock(), Ok(None))
    }

    /// Reads the state file; a missing file is the empty state.
    pub fn load_state(&self) -> Result<AgentState, AgentError> {
        Ok(AgentState::load(
            self.storage.as_ref(),
            &self.config.state_file(),
        )?)
    }

    /// Replaces the state file atomically, creating the state directory first where needed.
    pub fn store_state(&self, state: &AgentState) -> Result<(), AgentError> {
        self.ensure_state_dir();
        Ok(state.store(self.storage.as_ref(), &self.config.state_file())?)
    }

    /// Create the state directory where there is one to create (ignoring creation errors: the
    /// write that follows reports them). Every directory it creates is made durable by an
    /// fsync of its parent, so a state file written into it cannot vanish with the directory
    /// entry after a power cut.
    pub(crate) fn ensure_state_dir(&self) {
        if !self.env.creates_state_dir() {
            return;
        }
        let missing: Vec<std::path::PathBuf> = self
            .config
            .state_dir
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(std::path::Path::to_path_buf)
            .collect();
        if missing.is_empty() || std::fs::create_dir_all(&self.config.state_dir).is_err() {
            return;
        }
        // Outermost first: each new directory's entry lives in its parent.
        for dir in missing.iter().rev() {
            let parent = crate::io::parent_dir(dir);
            if let Err(e) = self.storage.sync_dir(&parent) {
                eprintln!(
                    "keel-agent: warning: created {} but could not fsync {}: {e}; the state directory may not survive a power cut",
                    dir.display(),
                    parent.display()
                );
            }
        }
    }

    /// This boot's id (`boot_id_path`), if readable.
    pub fn boot_id(&self) -> Option<String> {
        read_text(self.storage.as_ref(), &self.config.boot_id_path).map(|s| s.trim().to_string())
    }

    fn slot_from_cmdline(&self) -> Result<Option<SlotId>, AgentError> {
        let Some(cmdline) = read_text(self.storage.as_ref(), &self.config.cmdline_path) else {
            return Ok(None);
        };
        let tokens: Vec<&str> = cmdline.split_whitespace().collect();
        let a = self.config.slots.a.cmdline_token(SlotId::A);
        let b = self.config.slots.b.cmdline_token(SlotId::B);
        match (tokens.contains(&a.as_str()), tokens.contains(&b.as_str())) {
            (true, false) => Ok(Some(SlotId::A)),
            (false, true) => Ok(Some(SlotId::B)),
            (true, true) => Err(AgentError::Detect(format!(
                "kernel command line names both slots ({a} and {b})"
            ))),
            (false, false) => Ok(None),
        }
    }

    /// The booted slot, from the kernel command line or the bootloader environment.
    pub fn booted_slot(&self, view: &BootView) -> Result<SlotId, AgentError> {
        let from_cmdline = match self.config.detect {
            Detect::Bootenv => None,
            Detect::Cmdline | Detect::Auto => self.slot_from_cmdline()?,
        };
        if let Some(slot) = from_cmdline {
            return Ok(slot);
        }
        if self.config.detect != Detect::Cmdline {
            if let Some(slot) = view.booted {
                return Ok(slot);
            }
        }
        Err(AgentError::Detect(format!(
            "no slot token ({} / {}) in {} and the {} environment does not tell",
            self.config.slots.a.cmdline_token(SlotId::A),
            self.config.slots.b.cmdline_token(SlotId::B),
            self.config.cmdline_path.display(),
            self.bootloader.kind()
        )))
    }

    /// Booted slot and boot view, with the bootloader's booted hint filled in.
    pub fn observe(&self) -> Result<(SlotId, BootView), AgentError> {
        let view = self.bootloader.view()?;
        let booted = self.booted_slot(&view)?;
        let view = self.bootloader.view_for(booted, view);
        Ok((booted, view))
    }

    /// Bring the state file up to date with what happened across a reboot. Persists changes.
    pub fn reconcile(&mut self) -> Result<(AgentState, SlotId, BootView, Verdict), AgentError> {
        let (booted, view) = self.observe()?;
        let mut state = self.load_state()?;
        let Some(tx) = state.transaction.clone() else {
            return Ok((state, booted, view, Verdict::Success));
        };
        let boot_id = self.boot_id();
        // "Same boot" matters only while the installing process is alive.
        let same_boot = boot_id.is_some() && tx.boot_id == boot_id && self.other_agent_running();
        let verdict = reconcile(&tx, booted, &view, same_boot);
        let mut changed = false;
        match &verdict {
            Verdict::InProgress | Verdict::Testing => {}
            Verdict::AwaitingReboot => {
                if tx.phase != Phase::Activated {
                    if let Some(t) = state.transaction.as_mut() {
                        t.phase = Phase::Activated;
                    }
                    changed = true;
                }
            }
            Verdict::Success => {
                state.finish(
                    Outcome::Success,
                    format!("slot {booted} booted and confirmed"),
                );
                changed = true;
            }
            Verdict::RolledBack(message) => {
                self.bootloader.mark_failed(booted, tx.target_slot)?;
                state.finish(Outcome::RolledBack, message.clone());
                changed = true;
            }
            Verdict::Failed(message) => {
                // Never activated: a DDI action stays open and is installed again (bounded).
                state.interrupt(message, self.config.max_interrupted_attempts);
                changed = true;
            }
        }
        if changed {
            self.store_state(&state)?;
        }
        Ok((state, booted, view, verdict))
    }

    /// Reconciles, then reports booted slot, bootloader state and the update in flight
    /// (`keel-agent status`).
    pub fn status(&mut self) -> Result<Status, AgentError> {
        let (state, booted, view, verdict) = self.reconcile()?;
        let phase = state.transaction.as_ref().map(|t| t.phase);
        let label = match (&verdict, phase) {
            (_, None) => "idle",
            (Verdict::InProgress, _) => "installing",
            (Verdict::AwaitingReboot, _) => "installed",
            (Verdict::Testing, _) => "testing",
            _ => "idle",
        };
        Ok(Status {
            booted_slot: booted,
            other_slot: booted.other(),
            bootloader: self.bootloader.kind(),
            ustate: view.ustate,
            next_boot: view.next_boot,
            state: label,
            pending: state.transaction.clone(),
            last_result: state.last_result.clone(),
            interrupted: state.interrupted.clone(),
            last_media: state.last_media.clone(),
            bootloader_details: view.details.clone(),
        })
    }

    /// Mark the booted slot good after an optional health check. A failed health check
    /// leaves the slot in TESTING, so the bootloader falls back on the next boot.
    pub fn confirm(&mut self, health_check: Option<&str>) -> Result<ConfirmOutcome, AgentError> {
        let _lock = self.lock()?;
        let (state, booted, view, verdict) = self.reconcile()?;
        if let Some(command) = health_check.or(self.config.health_check.as_deref()) {
            run_health_check(command)?;
        }
        Ok(self.confirm_reconciled(state, booted, &view, &verdict)?.0)
    }

    /// Confirm after the caller ran the health check itself (the DDI cycle); returns the state
    /// as confirm left it, so the caller need not read it again.
    pub(crate) fn confirm_checked(&mut self) -> Result<AgentState, AgentError> {
        let _lock = self.lock()?;
        let (state, booted, view, verdict) = self.reconcile()?;
        Ok(self.confirm_reconciled(state, booted, &view, &verdict)?.1)
    }

    /// The part of confirm after the health check, under the agent lock.
    fn confirm_reconciled(
        &mut self,
        mut state: AgentState,
        booted: SlotId,
        view: &BootView,
        verdict: &Verdict,
    ) -> Result<(ConfirmOutcome, AgentState), AgentError> {
        if view.failed == Some(booted) {
            return Err(AgentError::Refused(format!(
                "the bootloader marked the booted slot {booted} failed"
            )));
        }
        self.bootloader.confirm(booted)?;
        if *verdict == Verdict::Testing {
            state.finish(
                Outcome::Success,
                format!("slot {booted} booted and confirmed"),
            );
            self.store_state(&state)?;
            return Ok((ConfirmOutcome::Confirmed(booted), state));
        }
        Ok((ConfirmOutcome::AlreadyGood(booted), state))
    }

    /// Checks before an install may start; returns (booted, target).
    pub(crate) fn preflight(&mut self) -> Result<(AgentState, SlotId, SlotId), AgentError> {
        let (state, booted, view, verdict) = self.reconcile()?;
        match verdict {
            Verdict::InProgress => {
                return Err(AgentError::Refused(
                    "another install is in progress in this boot".into(),
                ))
            }
            Verdict::Testing => {
                return Err(AgentError::Refused(format!(
                    "slot {booted} is being tested: confirm it (or reboot to roll back) before installing"
                )))
            }
            _ => {}
        }
        // The bootloader says the booted slot is on trial (whoever installed it): installing now
        // would mark it good without a health check (GRUB's begin_install resets its `_TRY`,
        // U-Boot's `upgrade_available`). EBG's begin_update refuses the same state by itself.
        if view.ustate == UState::Testing && view.booted.is_none_or(|b| b == booted) {
            return Err(AgentError::Refused(format!(
                "slot {booted} is in TESTING: confirm it (or reboot to roll back) before installing"
            )));
        }
        Ok((state, booted, booted.other()))
    }
}

fn read_text(storage: &dyn keel_bootenv::storage::Storage, path: &Path) -> Option<String> {
    storage
        .read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Run a command through `sh -c`; success means exit status 0.
pub fn run_health_check(command: &str) -> Result<(), AgentError> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .map_err(|e| AgentError::HealthCheck {
            command: command.to_string(),
            reason: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(AgentError::HealthCheck {
            command: command.to_string(),
            reason: status.to_string(),
        })
    }
}
