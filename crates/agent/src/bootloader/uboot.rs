//! U-Boot backend over `keel_bootenv::uboot::UbootEnv` (single or redundant, `fw_env.config`).
//!
//! Variables (the bootcount scheme of U-Boot's `CONFIG_BOOTCOUNT_LIMIT` + `CONFIG_BOOTCOUNT_ENV`):
//! `<slot_var>` (slot to boot), `upgrade_available` (1 while a new slot is on trial; U-Boot only
//! counts boots then), `bootcount`, `bootlimit`, and SWUpdate's `ustate`. The boot script must
//! run, as `altbootcmd` (when `bootcount > bootlimit`): switch `<slot_var>` to the other slot,
//! `setenv upgrade_available 0; setenv ustate 3; saveenv` and boot. docs/agent.md has the script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_bootenv::uboot::{CopyStatus, FwEnvConfig, UbootEnv};
use keel_bootenv::BootEnv;

use super::{BootError, BootView, Bootloader, UState};
use crate::config::SlotId;
use crate::io::SharedStorage;

/// U-Boot: the environment `fw_env.config` locates, with the bootcount scheme.
pub struct UbootBootloader {
    storage: SharedStorage,
    config_path: PathBuf,
    config: FwEnvConfig,
    slot_var: String,
    slot_values: [String; 2],
    bootlimit: u32,
}

/// U-Boot writes `bootcount` with `env_set_ulong` (hex); accept decimal-looking values too,
/// which are the same for the small numbers a bootcount reaches.
pub fn parse_count(text: Option<String>) -> u32 {
    text.and_then(|t| {
        let t = t.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        u32::from_str_radix(t, 16).ok()
    })
    .unwrap_or(0)
}

impl UbootBootloader {
    /// Loads `config_path` (`fw_env.config`); `slot_var` names the slot to boot, with
    /// `slot_values` for A and B; `bootlimit` is written on activation. Fails if the
    /// `fw_env.config` cannot be read or parsed.
    pub fn open(
        storage: SharedStorage,
        config_path: &Path,
        slot_var: String,
        slot_values: [String; 2],
        bootlimit: u32,
    ) -> Result<UbootBootloader, BootError> {
        let config = FwEnvConfig::load(storage.as_ref(), config_path)?;
        Ok(UbootBootloader {
            storage,
            config_path: config_path.to_path_buf(),
            config,
            slot_var,
            slot_values,
            bootlimit,
        })
    }

    fn env(&self) -> Result<UbootEnv, BootError> {
        Ok(UbootEnv::open(self.storage.clone(), self.config.clone())?)
    }

    fn slot_of(&self, value: Option<String>) -> Option<SlotId> {
        let value = value?;
        if value == self.slot_values[0] {
            Some(SlotId::A)
        } else if value == self.slot_values[1] {
            Some(SlotId::B)
        } else {
            None
        }
    }

    fn value_of(&self, slot: SlotId) -> &str {
        &self.slot_values[slot.index()]
    }
}

impl Bootloader for UbootBootloader {
    fn kind(&self) -> &'static str {
        "uboot"
    }

    fn view(&self) -> Result<BootView, BootError> {
        let env = self.env()?;
        let slot = self.slot_of(env.get(&self.slot_var));
        let upgrade = env.get("upgrade_available").as_deref() == Some("1");
        let bootcount = parse_count(env.get("bootcount"));
        let bootlimit = env
            .get("bootlimit")
            .and_then(|v| v.trim().parse::<u32>().ok());
        let rolled_back = env.get("ustate").as_deref() == Some("3");
        let (ustate, booted) = match (upgrade, bootcount) {
            (true, 0) => (UState::Installed, slot.map(SlotId::other)),
            (true, _) => (UState::Testing, slot),
            (false, _) if rolled_back => (UState::Failed, slot),
            (false, _) => (UState::Ok, slot),
        };
        // On the next boot U-Boot increments bootcount and runs altbootcmd past the limit;
        // `bootlimit` 0 or unset never falls back (`if (bootlimit && bootcount > bootlimit)`,
        // common/autoboot.c).
        let falls_back = upgrade
            && bootlimit.is_some_and(|limit| limit != 0 && bootcount.saturating_add(1) > limit);
        let next_boot = if falls_back {
            slot.map(SlotId::other)
        } else {
            slot
        };
        let mut details = BTreeMap::new();
        for key in [
            self.slot_var.as_str(),
            "upgrade_available",
            "bootcount",
            "bootlimit",
            "ustate",
        ] {
            if let Some(v) = env.get(key) {
                details.insert(key.to_string(), v);
            }
        }
        details.insert(
            "fw_env_config".into(),
            self.config_path.display().to_string(),
        );
        details.insert("current_copy".into(), env.current_index().to_string());
        for (i, c) in env.copies().iter().enumerate() {
            if let CopyStatus::Invalid(why) = c {
                details.insert(
                    format!("copy{i}"),
                    format!("invalid: {why} (rewritten from the good copy at the next confirm or install)"),
                );
            }
        }
        Ok(BootView {
            next_boot,
            booted,
            ustate,
            failed: if rolled_back {
                slot.map(SlotId::other)
            } else {
                None
            },
            details,
        })
    }

    fn begin_install(&mut self, booted: SlotId, _target: SlotId) -> Result<(), BootError> {
        let mut env = self.env()?;
        // Whatever an earlier install left, the loader must boot the running slot until the
        // new one is complete: one commit (the redundant copy with flags+1) if needed. An
        // earlier activation (`ustate=1`, INSTALLED) is withdrawn with it, so that SWUpdate's
        // `ustate` and `status` agree; a recorded rollback (`ustate=3`) stays for the report.
        let installed = env.get("ustate").as_deref() == Some("1");
        if env.get(&self.slot_var).as_deref() != Some(self.value_of(booted))
            || env.get("upgrade_available").as_deref() == Some("1")
            || installed
        {
            env.set(&self.slot_var, self.value_of(booted))?;
            env.set("upgrade_available", "0")?;
            env.set("bootcount", "0")?;
            if installed {
                env.set("ustate", "0")?;
            }
            env.commit()?;
        }
        Ok(())
    }

    fn activate(
        &mut self,
        _booted: SlotId,
        target: SlotId,
        vars: &[(String, String)],
    ) -> Result<(), BootError> {
        let mut env = self.env()?;
        for (key, value) in vars {
            env.set(key, value)?;
        }
        env.set(&self.slot_var, self.value_of(target))?;
        env.set("upgrade_available", "1")?;
        env.set("bootcount", "0")?;
        env.set("bootlimit", &self.bootlimit.to_string())?;
        env.set("ustate", "1")?;
        env.commit()?;
        Ok(())
    }

    fn confirm(&mut self, _booted: SlotId) -> Result<(), BootError> {
        let mut env = self.env()?;
        env.set("upgrade_available", "0")?;
        env.set("bootcount", "0")?;
        env.set("ustate", "0")?;
        if env.is_dirty() {
            env.commit()?;
        }
        // A copy that was unreadable or failed its CRC when loaded is rewritten from the
        // current one (the commit above, if any, already went to it). A failed repair is
        // reported, not turned into a failed confirm.
        if let Err(e) = env.repair() {
            eprintln!(
                "keel-agent: warning: could not repair a damaged U-Boot environment copy: {e}; the current copy is fine, `status` shows the damaged one"
            );
        }
        Ok(())
    }
}
