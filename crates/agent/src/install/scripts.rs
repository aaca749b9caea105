//! Pre- and post-install scripts (`sh -s preinst|postinst`, body on stdin), with the slots and
//! the target slot's devices in the environment.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::error::{InstallError, ScriptError};
use super::plan::PlannedScript;
use super::SlotPair;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Before the first image byte is written.
    Pre,
    /// After every image is written and verified, before activation.
    Post,
}

impl Stage {
    /// The argument scripts get (SWUpdate's).
    fn as_str(self) -> &'static str {
        match self {
            Stage::Pre => "preinst",
            Stage::Post => "postinst",
        }
    }
}

/// Run the scripts of `stage` in description order; the first failure stops the install.
pub(super) fn run_scripts(
    scripts: &[PlannedScript],
    bodies: &BTreeMap<String, Vec<u8>>,
    stage: Stage,
    slots: SlotPair,
    targets: &BTreeMap<String, PathBuf>,
) -> Result<(), InstallError> {
    for script in scripts {
        if script.kind.runs(stage == Stage::Pre) {
            run_script(bodies.get(&script.name), stage, slots, targets).map_err(|source| {
                InstallError::Script {
                    name: script.name.clone(),
                    stage: stage.as_str(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

fn run_script(
    body: Option<&Vec<u8>>,
    stage: Stage,
    slots: SlotPair,
    targets: &BTreeMap<String, PathBuf>,
) -> Result<(), ScriptError> {
    let body = body.ok_or(ScriptError::NotInBundle)?;
    let mut command = Command::new("sh");
    command
        .arg("-s")
        .arg(stage.as_str())
        .env("KEEL_BOOTED_SLOT", slots.booted.as_str())
        .env("KEEL_TARGET_SLOT", slots.target.as_str())
        .stdin(Stdio::piped());
    for (target, path) in targets {
        command.env(format!("KEEL_TARGET_{}", env_name(target)), path);
    }
    let mut child = command.spawn().map_err(ScriptError::Io)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).map_err(ScriptError::Io)?;
    }
    let status = child.wait().map_err(ScriptError::Io)?;
    if !status.success() {
        return Err(ScriptError::Exit(status));
    }
    Ok(())
}

/// `rootfs` → `ROOTFS`, `boot-a` → `BOOT_A`.
fn env_name(target: &str) -> String {
    target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
