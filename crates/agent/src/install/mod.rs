//! Streaming install of a `.swu` into the inactive slot.
//!
//! Order of events (each step starts only when the previous one is durable):
//! 1. `sw-description` and its CMS signature are read and verified: nothing is written before
//!    (`trust.rs`).
//! 2. The description is resolved for the target slot ([`plan`]: selection, hardware
//!    compatibility, every image mapped to a target of the *inactive* slot, every image hashed).
//! 3. State file: transaction `installing`. Bootloader: target made unbootable.
//! 4. Each member streams straight from the source into its target (`members.rs`, `stream.rs`:
//!    hash of the stored bytes computed on the way, AES-CBC decrypted and zstd decompressed on
//!    the fly, written raw, as a delta or from chunks), is checked against its sha256 and
//!    fsynced. Pre-install scripts run before the first image byte is written.
//! 5. Post-install scripts run (`scripts.rs`).
//! 6. State file: `activating`; bootloader: one env commit switches to the target
//!    (INSTALLED); state file: `activated`.
//!
//! Any error before step 6 leaves the target unbootable and records a failed result.

mod chunked;
mod error;
mod members;
pub mod plan;
mod scripts;
mod stream;
mod trust;

use std::io::Read;
use std::path::PathBuf;

use keel_formats::swu::SwuReader;

pub use error::{
    ImageError, InstallError, KeyError, PlanError, ScriptError, StructureError, TrustError,
};
use members::{Writer, Written};
use plan::{Plan, PlanContext};

use crate::agent::Agent;
use crate::chunks::PackSource;
use crate::config::SlotId;
use crate::state::{now, AgentState, Outcome, Phase, Transaction};

/// sw-description image `type` of a keel static delta; the result is written into the inactive slot.
pub use keel_formats::swdesc::KEEL_DELTA_TYPE as DELTA_TYPE;

/// Bytes accepted after the cpio trailer (cpio tools pad to 512 bytes; some to 10 KiB blocks).
pub const MAX_TRAILING_BYTES: u64 = 64 * 1024;

/// Largest script accepted (scripts are held in memory until they run).
pub const MAX_SCRIPT_SIZE: u64 = 1024 * 1024;

/// Knobs of one install.
#[derive(Default)]
pub struct InstallOptions<'a> {
    /// Bytes per write to the slot (default 64 KiB).
    pub chunk_size: Option<usize>,
    /// Server action id to remember for the post-reboot report.
    pub action_id: Option<String>,
    /// Called with (bytes of images written so far, total image bytes in the bundle).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Where the packs of `keel-chunked` images are (docs/delta-format.md).
    pub packs: PackSource,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The slot that ran during the install.
    pub booted: SlotId,
    /// The slot written and activated; it boots next.
    pub target: SlotId,
    /// sw-description `software.version`.
    pub version: Option<String>,
    /// Subject of the certificate that signed sw-description (RFC 4514).
    pub signer: String,
    /// (image file name, target path, bytes written) in bundle order.
    pub images: Vec<(String, PathBuf, u64)>,
    /// What `keel-chunked` images took from where.
    pub chunked: ChunkedStats,
}

/// Totals over the `keel-chunked` images of one install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkedStats {
    /// Image bytes of chunked images.
    pub image_bytes: u64,
    /// Compressed bytes fetched from packs.
    pub fetched_bytes: u64,
    /// Reads / HTTP Range requests made on packs.
    pub requests: u64,
    /// Chunks fetched from packs.
    pub fetched_chunks: u64,
    /// Chunks copied from the booted slot (the seed).
    pub seed_chunks: u64,
    /// Images whose seed chunks came from the kept index of the booted slot (no seed scan).
    pub kept_indexes: u64,
    /// Chunks already correct in the target (an interrupted earlier install).
    pub kept_chunks: u64,
}

/// The booted slot and the slot being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotPair {
    pub booted: SlotId,
    pub target: SlotId,
}

impl Agent {
    /// Install a bundle read from `source`. See the module docs for the order of events.
    pub fn install(
        &mut self,
        source: impl Read,
        mut options: InstallOptions<'_>,
    ) -> Result<InstallReport, InstallError> {
        let _lock = self.lock()?;
        let mut swu = SwuReader::new(source);
        let (desc, signer) = self.verified_description(&mut swu)?;

        let (mut state, booted, target) = self.preflight()?;
        let slots = SlotPair { booted, target };
        let plan = Plan::new(
            &desc,
            PlanContext {
                slots: &self.config.slots,
                booted,
                target,
                hardware_revision: self.config.hardware_revision.as_deref(),
            },
        )?;
        let key = if plan.encrypted() {
            Some(self.aes_key()?)
        } else {
            None
        };

        state.transaction = Some(Transaction {
            phase: Phase::Installing,
            from_slot: booted,
            target_slot: target,
            version: plan.version.clone(),
            action_id: options.action_id.clone(),
            started_at: now(),
            boot_id: self.boot_id(),
        });
        // The targets about to be written no longer hold what the state file says they hold.
        if let Some(records) = state.slots.get_mut(&target) {
            for image in &plan.images {
                records.remove(&image.target_name);
            }
        }
        self.store_state(&state)?;

        let job = Job {
            plan: &plan,
            slots,
            key: key.as_ref(),
            options: &mut options,
        };
        match self.write_and_activate(&mut swu, job, &mut state) {
            Ok(done) => Ok(InstallReport {
                booted,
                target,
                version: plan.version,
                signer: signer.subject,
                images: done.report,
                chunked: done.chunked,
            }),
            Err(e) => {
                // Best effort: the target is unbootable either way; the record lets `status`
                // and the server see why.
                let activating = state
                    .transaction
                    .as_ref()
                    .is_some_and(|t| t.phase != Phase::Installing);
                if !activating {
                    state.finish(Outcome::Failed, e.to_string());
                    let _ = self.store_state(&state);
                }
                Err(e)
            }
        }
    }

    /// Steps 3 (bootloader) to 6 of the module docs; the transaction is recorded already.
    fn write_and_activate<R: Read>(
        &mut self,
        swu: &mut SwuReader<R>,
        job: Job<'_, '_>,
        state: &mut AgentState,
    ) -> Result<Written, InstallError> {
        let Job {
            plan,
            slots,
            key,
            options,
        } = job;
        self.bootloader.begin_install(slots.booted, slots.target)?;

        let seed_records = state.slots.get(&slots.booted).cloned().unwrap_or_default();
        let mut writer = Writer::new(self, plan, slots, key, options, &seed_records);
        writer.all_members(swu)?;
        let done = writer.finish()?;

        if let Some(tx) = state.transaction.as_mut() {
            tx.phase = Phase::Activating;
        }
        let records = state.slots.entry(slots.target).or_default();
        for (image, written) in plan.images.iter().zip(&done.written) {
            if let Some(written) = written {
                let mut record = written.clone();
                record.version = plan.version.clone();
                records.insert(image.target_name.clone(), record);
            }
        }
        self.store_state(state)?;
        self.bootloader
            .activate(slots.booted, slots.target, &plan.bootenv)?;
        if let Some(tx) = state.transaction.as_mut() {
            tx.phase = Phase::Activated;
        }
        self.store_state(state)?;
        Ok(done)
    }
}

/// What one install writes and how (the transaction is recorded separately).
struct Job<'a, 'o> {
    plan: &'a Plan,
    slots: SlotPair,
    key: Option<&'a keel_sign::aes::AesKey>,
    options: &'a mut InstallOptions<'o>,
}
