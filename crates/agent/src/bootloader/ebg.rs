//! EFI Boot Guard backend over `keel_bootenv::ebg::BgEnvSet`.
//!
//! A config copy belongs to the slot whose `kernelfile` it names (CIP layout: the UKI of slot
//! B lives on config partition BOOT1 and its copy says `C:BOOT1:linux.efi`), so which copy is
//! written is decided by revisions exactly as libebgenv does: always the oldest, never the
//! copy the running system booted from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_bootenv::ebg::{BgEnv, BgEnvSet, CopyState, EnvLocation, UState as EbgUState};

use super::{BootError, BootView, Bootloader, UState};
use crate::config::SlotId;
use crate::io::SharedStorage;

/// EFI Boot Guard: two `BGENV.DAT` config copies, each naming the kernel of one slot.
pub struct EbgBootloader {
    storage: SharedStorage,
    env: [PathBuf; 2],
    watchdog_sec: u16,
    /// (kernelfile, kernelparams) of slot A and slot B.
    slots: [(Option<String>, Option<String>); 2],
    set: Option<BgEnvSet>,
}

fn ustate(u: EbgUState) -> UState {
    match u {
        EbgUState::OK => UState::Ok,
        EbgUState::INSTALLED => UState::Installed,
        EbgUState::TESTING => UState::Testing,
        EbgUState::FAILED => UState::Failed,
        _ => UState::Unknown,
    }
}

/// The copy the running system was started from: the loader boots the valid copy with the
/// highest revision unless it is in flight (`in_progress`) or was only just installed
/// (INSTALLED is turned into TESTING by the loader, so an INSTALLED copy was not booted yet);
/// FAILED copies have revision 0.
fn booted_index(copies: &[CopyState]) -> Option<usize> {
    copies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.env().map(|e| (i, e)))
        .filter(|(_, e)| e.in_progress == 0 && e.revision != 0 && e.ustate != EbgUState::INSTALLED)
        .max_by_key(|(i, e)| (e.revision, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

impl EbgBootloader {
    /// `env[0]`/`env[1]`: the copies of slot A and B; `watchdog_sec` goes into a new copy (0 keeps
    /// the current value); `slots`: (`kernelfile`, `kernelparams`) of slot A and B. Nothing is read
    /// until first use.
    pub fn new(
        storage: SharedStorage,
        env: [PathBuf; 2],
        watchdog_sec: u16,
        slots: [(Option<String>, Option<String>); 2],
    ) -> EbgBootloader {
        EbgBootloader {
            storage,
            env,
            watchdog_sec,
            slots,
            set: None,
        }
    }

    fn open(&self) -> Result<BgEnvSet, BootError> {
        let locations = self.env.iter().cloned().map(EnvLocation::File).collect();
        Ok(BgEnvSet::open(self.storage.clone(), locations)?)
    }

    /// Which slot a copy boots: matched by kernelfile (case-insensitive, as FAT is), else by
    /// kernelparams.
    fn slot_of(&self, env: &BgEnv) -> Option<SlotId> {
        for id in [SlotId::A, SlotId::B] {
            let (kernelfile, kernelparams) = &self.slots[id.index()];
            match kernelfile {
                Some(k) if k.eq_ignore_ascii_case(&env.kernelfile) => return Some(id),
                Some(_) => continue,
                None => {}
            }
            if let Some(p) = kernelparams {
                if p == &env.kernelparams {
                    return Some(id);
                }
            }
        }
        None
    }

    fn slot_of_index(&self, copies: &[CopyState], index: Option<usize>) -> Option<SlotId> {
        index
            .and_then(|i| copies.get(i))
            .and_then(CopyState::env)
            .and_then(|e| self.slot_of(e))
    }
}

impl Bootloader for EbgBootloader {
    fn kind(&self) -> &'static str {
        "ebg"
    }

    fn view(&self) -> Result<BootView, BootError> {
        let set = self.open()?;
        let copies = set.copies();
        let booted_idx = booted_index(copies);
        let decision = keel_bootenv::ebg::select_boot(copies);
        let next_boot = decision.booted.as_ref().and_then(|e| self.slot_of(e));
        // The copy that decides the next boot: the latest one unless it is in flight.
        let controlling = copies
            .iter()
            .filter_map(CopyState::env)
            .filter(|e| e.in_progress == 0 && e.revision != 0)
            .max_by_key(|e| e.revision);
        let failed_copy = copies
            .iter()
            .filter_map(CopyState::env)
            .find(|e| e.revision == 0 && e.ustate == EbgUState::FAILED);
        let failed = failed_copy.and_then(|e| self.slot_of(e));
        let mut state = controlling.map_or(UState::Unknown, |e| ustate(e.ustate));
        if state == UState::Ok && failed_copy.is_some() {
            // libebgenv's global state: a rollback happened and was not acknowledged yet.
            state = UState::Failed;
        }
        let mut details = BTreeMap::new();
        for (i, copy) in copies.iter().enumerate() {
            let text = match copy {
                CopyState::Valid(e) => format!(
                    "revision={} ustate={} in_progress={} kernelfile={} slot={}",
                    e.revision,
                    e.ustate.name(),
                    e.in_progress,
                    e.kernelfile,
                    self.slot_of(e).map_or("?", |s| s.as_str())
                ),
                CopyState::Invalid(why) => {
                    format!("invalid: {why} (rewritten from the running copy at the next confirm or install)")
                }
                CopyState::Missing => "missing".to_string(),
            };
            details.insert(format!("config{i}"), text);
        }
        Ok(BootView {
            next_boot,
            booted: self.slot_of_index(copies, booted_idx),
            ustate: state,
            failed,
            details,
        })
    }

    fn begin_install(&mut self, booted: SlotId, _target: SlotId) -> Result<(), BootError> {
        let mut set = self.open()?;
        let booted_idx = booted_index(set.copies());
        if self.slot_of_index(set.copies(), booted_idx) != Some(booted) {
            return Err(BootError::Invalid(format!(
                "no valid EFI Boot Guard config copy names the booted slot {booted} (check kernelfile in the slot config)"
            )));
        }
        // An earlier install may have left the newest copy INSTALLED for the very slot we are
        // about to overwrite: make it unbootable first (in_progress=1), so that the loader
        // never starts a half-written slot. begin_update then reuses that copy.
        if let Some(latest_idx) = set.latest_index() {
            if Some(latest_idx) != booted_idx {
                if let Some(latest) = set.copies().get(latest_idx).and_then(CopyState::env) {
                    if latest.in_progress == 0 {
                        let mut blocked = latest.clone();
                        blocked.in_progress = 1;
                        set.write_copy(latest_idx, &blocked)?;
                    }
                }
            }
        }
        let index = set.begin_update()?;
        if Some(index) == booted_idx {
            return Err(BootError::Invalid(
                "EFI Boot Guard update would overwrite the booted config copy".into(),
            ));
        }
        self.set = Some(set);
        Ok(())
    }

    fn activate(
        &mut self,
        _booted: SlotId,
        target: SlotId,
        vars: &[(String, String)],
    ) -> Result<(), BootError> {
        let set = self
            .set
            .as_mut()
            .ok_or_else(|| BootError::Invalid("activate without begin_install".into()))?;
        let (kernelfile, kernelparams) = self.slots[target.index()].clone();
        let env = set
            .pending_mut()
            .ok_or_else(|| BootError::Invalid("no EFI Boot Guard update in flight".into()))?;
        if let Some(k) = kernelfile {
            env.kernelfile = k;
        }
        if let Some(p) = kernelparams {
            env.kernelparams = p;
        }
        if self.watchdog_sec != 0 {
            env.watchdog_timeout_sec = self.watchdog_sec;
        }
        for (key, value) in vars {
            env.set(key, value)?;
        }
        // One write: in_progress=0 and ustate=INSTALLED with the higher revision.
        set.finalize_update()?;
        self.set = None;
        Ok(())
    }

    fn confirm(&mut self, _booted: SlotId) -> Result<(), BootError> {
        let mut set = self.open()?;
        set.confirm()?;
        // A copy that was unreadable or failed its CRC becomes a fallback clone of the running
        // one (never written over a valid copy; nothing while an update is on trial). The slot
        // is confirmed either way: a repair that fails (e.g. the config partition is not
        // mounted) is reported, not turned into a failed confirm.
        if let Err(e) = set.repair() {
            eprintln!(
                "keel-agent: warning: could not repair a damaged EFI Boot Guard config copy: {e}; the running copy is fine, `status` shows the damaged one"
            );
        }
        Ok(())
    }
}
