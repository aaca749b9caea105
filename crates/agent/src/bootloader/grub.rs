//! GRUB backend over `keel_bootenv::grub::GrubEnvFile`, with RAUC's variables so RAUC's
//! `contrib/grub.conf` logic works unchanged: `ORDER="B A"`, `<slot>_OK`, `<slot>_TRY`. The
//! loader boots the first slot of `ORDER` with `_OK=1` and `_TRY=0`, setting `_TRY=1` first;
//! confirming (RAUC's mark-good, needed after every boot) resets `_TRY=0`, and after a fallback
//! marks the failed slot bad. Every commit writes the second copy `grubenv.keel` and then
//! grubenv (each temp + fsync + rename + directory fsync); the copy in use is chosen as keel's
//! grub.cfg chooses it (docs/bootenv.md): grubenv unless GRUB cannot read it or it names no
//! bootable slot (the loader's own in-place `save_env` tore it), then `grubenv.keel`. A damaged
//! copy is reported by `status` and repaired at the next commit (every confirm).

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_bootenv::grub::GrubEnvFile;
use keel_bootenv::BootEnv;

use super::{BootError, BootView, Bootloader, UState};
use crate::config::SlotId;
use crate::io::SharedStorage;

/// GRUB: a grubenv file driven with RAUC's `ORDER` / `<slot>_OK` / `<slot>_TRY` variables.
pub struct GrubBootloader {
    storage: SharedStorage,
    path: PathBuf,
}

fn flag(env: &GrubEnvFile, slot: SlotId, what: &str) -> bool {
    env.get(&format!("{slot}_{what}")).as_deref() == Some("1")
}

fn order(env: &GrubEnvFile) -> Vec<SlotId> {
    env.get("ORDER")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(SlotId::parse)
        .collect()
}

impl GrubBootloader {
    /// The backend over the grubenv at `path` (read on use).
    pub fn new(storage: SharedStorage, path: PathBuf) -> GrubBootloader {
        GrubBootloader { storage, path }
    }

    fn env(&self) -> Result<GrubEnvFile, BootError> {
        Ok(GrubEnvFile::open_redundant(
            self.storage.clone(),
            self.path.clone(),
        )?)
    }
}

impl Bootloader for GrubBootloader {
    fn kind(&self) -> &'static str {
        "grub"
    }

    fn view(&self) -> Result<BootView, BootError> {
        let env = self.env()?;
        let order = order(&env);
        let next_boot = order
            .iter()
            .copied()
            .find(|&s| flag(&env, s, "OK") && !flag(&env, s, "TRY"));
        let mut details: BTreeMap<String, String> = env.vars().into_iter().collect();
        if !env.problems().is_empty() {
            details.insert(
                "grubenv_damaged".into(),
                format!(
                    "{}; {}; repaired at the next confirm or install",
                    env.problems().join("; "),
                    if env.from_backup() {
                        "using grubenv.keel"
                    } else {
                        "using grubenv"
                    }
                ),
            );
        }
        Ok(BootView {
            next_boot,
            booted: None,
            ustate: UState::Unknown,
            failed: None,
            details,
        })
    }

    fn view_for(&self, booted: SlotId, mut view: BootView) -> BootView {
        let Ok(env) = self.env() else { return view };
        let Some(&primary) = order(&env).first() else {
            view.ustate = UState::Ok;
            return view;
        };
        let (ok, tried) = (flag(&env, primary, "OK"), flag(&env, primary, "TRY"));
        view.ustate = match (primary == booted, ok, tried) {
            (true, _, true) => UState::Testing,
            (true, _, false) => UState::Ok,
            (false, true, false) => UState::Installed,
            (false, true, true) => {
                view.failed = Some(primary);
                UState::Failed
            }
            (false, false, _) => UState::Ok,
        };
        view
    }

    fn begin_install(&mut self, booted: SlotId, target: SlotId) -> Result<(), BootError> {
        let mut env = self.env()?;
        // The running slot is the fallback: make sure the loader will take it (if it was not
        // marked good this boot, RAUC's "reset all tries" path would retry the new slot).
        env.set(&format!("{booted}_OK"), "1")?;
        env.set(&format!("{booted}_TRY"), "0")?;
        env.set(&format!("{target}_OK"), "0")?;
        env.set(&format!("{target}_TRY"), "0")?;
        env.set("ORDER", &format!("{booted} {target}"))?;
        env.commit()?;
        Ok(())
    }

    fn activate(
        &mut self,
        booted: SlotId,
        target: SlotId,
        vars: &[(String, String)],
    ) -> Result<(), BootError> {
        let mut env = self.env()?;
        for (key, value) in vars {
            env.set(key, value)?;
        }
        env.set(&format!("{target}_OK"), "1")?;
        env.set(&format!("{target}_TRY"), "0")?;
        env.set("ORDER", &format!("{target} {booted}"))?;
        env.commit()?;
        Ok(())
    }

    fn confirm(&mut self, booted: SlotId) -> Result<(), BootError> {
        let mut env = self.env()?;
        // RAUC's mark-good: the loader sets `<slot>_TRY=1` on every boot.
        if !flag(&env, booted, "OK") || flag(&env, booted, "TRY") {
            env.set(&format!("{booted}_OK"), "1")?;
            env.set(&format!("{booted}_TRY"), "0")?;
        }
        // After a fallback, mark the slot that failed its trial bad (RAUC's mark-bad), so
        // the loader's "no slot left, reset all tries" path cannot retry it.
        let other = booted.other();
        if order(&env).first() == Some(&other) && flag(&env, other, "TRY") {
            env.set(&format!("{other}_OK"), "0")?;
            env.set("ORDER", &format!("{booted} {other}"))?;
        }
        // Commits the changes, and rewrites a damaged copy even without changes.
        env.commit()?;
        Ok(())
    }

    fn mark_failed(&mut self, booted: SlotId, failed: SlotId) -> Result<(), BootError> {
        let mut env = self.env()?;
        if flag(&env, failed, "OK") || order(&env).first() != Some(&booted) {
            env.set(&format!("{failed}_OK"), "0")?;
            env.set("ORDER", &format!("{booted} {failed}"))?;
            env.commit()?;
        }
        Ok(())
    }
}
