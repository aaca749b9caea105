//! The external tools a state is checked with (fsck.vfat, bg_printenv) and the words of the
//! report.

use anyhow::{anyhow, Context, Result};
use keel_bootenv::ebg::{BootAction, CopyState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Seconds fsck.vfat may take on one partition image.
pub(crate) const FSCK_TIMEOUT: &str = "3";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FsckClass {
    Clean,
    /// Only the dirty bit (the volume was mounted when the power went).
    Dirty,
    /// Anything else fsck.vfat -n reports.
    Findings(String),
}

pub(crate) fn read_disk_env(path: &Path) -> Result<HashMap<String, String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run qemu/build-disk.sh)", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

pub(crate) fn num(env: &HashMap<String, String>, key: &str) -> Result<u64> {
    env.get(key)
        .ok_or_else(|| anyhow!("disk.env has no {key} (rebuild the disk with qemu/build-disk.sh)"))?
        .parse()
        .with_context(|| format!("disk.env: {key} is not a number"))
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn run(cmd: &mut Command) -> Result<(i32, Vec<u8>, String)> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub(crate) fn classify_fsck(rc: i32, text: &str) -> FsckClass {
    if rc == 0 {
        return FsckClass::Clean;
    }
    let findings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("fsck.fat ")
                && !l.starts_with("Dirty bit is set")
                && !l.contains("Automatically removing dirty bit")
                && !l.starts_with("Leaving filesystem unchanged")
                && !l.contains(" files, ")
                && !l.starts_with("1) Remove dirty bit")
                && !l.starts_with("2) No action")
                && !l.starts_with("*** Filesystem was changed ***")
        })
        .collect();
    if findings.is_empty() {
        FsckClass::Dirty
    } else {
        // Numbers and garbage names vary per state; the class is the kind of finding.
        let text = findings
            .iter()
            .take(3)
            .map(|l| {
                if l.chars().any(|c| !(' '..='~').contains(&c)) {
                    "<an entry with a garbage name>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join(" | ");
        let mut class = String::new();
        let mut in_number = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    class.push('N');
                }
                in_number = true;
            } else {
                in_number = false;
                class.push(c);
            }
        }
        FsckClass::Findings(class)
    }
}

pub(crate) fn parse_printenv(text: &str) -> Option<(u8, u32, u8)> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    Some((
        get("IN_PROGRESS")?.parse().ok()?,
        get("REVISION")?.parse().ok()?,
        get("USTATE")?.parse().ok()?,
    ))
}

pub(crate) fn rand_id() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    t ^ ((std::process::id() as u128) << 64)
}

pub(crate) fn triple(t: Option<(u8, u32, u8)>) -> String {
    match t {
        Some((p, r, u)) => format!("in_progress={p} revision={r} ustate={u}"),
        None => "unreadable".into(),
    }
}

pub(crate) fn action_name(action: BootAction) -> &'static str {
    match action {
        BootAction::Normal => "boots the latest copy",
        BootAction::SkippedInProgress => "skips the in-progress copy",
        BootAction::StartedTest => "starts a test boot (INSTALLED -> TESTING)",
        BootAction::RolledBack => "rolls back (TESTING -> FAILED)",
        BootAction::NoValidConfig => "finds no valid copy",
    }
}

pub(crate) fn fsck_word(f: &FsckClass) -> &'static str {
    match f {
        FsckClass::Clean => "clean",
        FsckClass::Dirty => "dirty bit",
        FsckClass::Findings(_) => "findings",
    }
}

pub(crate) fn slot_name(i: usize) -> &'static str {
    if i == 0 {
        "A"
    } else {
        "B"
    }
}

pub(crate) fn describe(c: &CopyState) -> String {
    match c {
        CopyState::Valid(e) => format!("revision {} {}", e.revision, e.ustate.name()),
        CopyState::Invalid(why) => format!("invalid: {why}"),
        CopyState::Missing => "BGENV.DAT missing".into(),
    }
}
