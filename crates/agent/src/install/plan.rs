//! The install plan: which member goes where, how it is written (raw, delta, chunked), what it is
//! checked against. A pure function of the sw-description and the slot configuration, decided
//! before anything is written, so every rule is unit-tested without storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_formats::swdesc::{Entry, Software, SwDescription};

use super::error::PlanError;
use super::DELTA_TYPE;
use crate::chunks::CHUNKED_TYPE;
use crate::config::{SlotConfig, SlotId, Slots};

/// How an image member becomes the target's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The member (once decrypted and decompressed) is the image.
    Raw,
    /// keel static delta against the same target of the booted slot.
    Delta,
    /// Chunk index; chunks from the booted slot, the target itself, or a pack.
    Chunked,
}

/// How the stored bytes of a member are decoded before they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decode {
    /// AES-256-CBC; `Some(ivt)` overrides the key file's IV (checked when the member is read).
    pub encrypted: Option<Option<String>>,
    /// zstd-compressed (`compressed = "zstd"`); decompressed after decryption.
    pub zstd: bool,
}

impl Decode {
    /// True when the written bytes differ from the stored ones (their hash must be computed).
    pub fn transforms(&self) -> bool {
        self.encrypted.is_some() || self.zstd
    }
}

/// One image of the description, resolved to a target of the inactive slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    /// The bundle member.
    pub name: String,
    /// How the member becomes the target's content.
    pub kind: ImageKind,
    /// Decryption and decompression on the way in.
    pub decode: Decode,
    /// Target name in the slot configuration (`rootfs`).
    pub target_name: String,
    /// Path of that target in the inactive slot.
    pub target: PathBuf,
    /// For deltas and chunked images: the same target of the booted slot.
    pub seed: Option<PathBuf>,
    /// sha256 of the stored member bytes (signed).
    pub sha256: [u8; 32],
    /// The entry's `properties` (a chunked image's target hash, size and pack).
    pub properties: Vec<(String, Vec<String>)>,
}

impl PlannedImage {
    /// The first value of property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// When a script of the description runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// SWUpdate `shellscript`: run with `preinst` before and `postinst` after the images.
    Shell,
    /// SWUpdate `preinstall`: before the first image byte is written.
    Pre,
    /// SWUpdate `postinstall`: after every image is written and verified, before activation.
    Post,
}

impl ScriptKind {
    /// Whether the script runs at the `pre` (else post) stage.
    pub fn runs(self, pre: bool) -> bool {
        match self {
            ScriptKind::Shell => true,
            ScriptKind::Pre => pre,
            ScriptKind::Post => !pre,
        }
    }
}

/// One script of the description, run as `sh -s <preinst|postinst>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedScript {
    /// The bundle member holding it.
    pub name: String,
    /// When it runs.
    pub kind: ScriptKind,
    /// sha256 of the member (signed).
    pub sha256: [u8; 32],
}

/// What an install of one description on this device does, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// sw-description `software.version`.
    pub version: Option<String>,
    /// The images of the selected description (at least one), in description order.
    pub images: Vec<PlannedImage>,
    /// Scripts, in description order.
    pub scripts: Vec<PlannedScript>,
    /// `bootenv` variables, written in the activation commit.
    pub bootenv: Vec<(String, String)>,
}

/// What the plan depends on besides the description.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    /// The configured slots.
    pub slots: &'a Slots,
    /// The slot that runs.
    pub booted: SlotId,
    /// The inactive slot, written by the install.
    pub target: SlotId,
    /// `hardware_revision` of the configuration; when set, the description must list it.
    pub hardware_revision: Option<&'a str>,
}

fn unsupported(message: String) -> PlanError {
    PlanError::Unsupported(message)
}

impl Plan {
    /// Resolves `desc` for `cx.target`: the slot's selection (or the plain `software`),
    /// hardware compatibility, every image mapped to a distinct target of the inactive slot, every
    /// entry hashed. Fails on the first rule broken; nothing has been written.
    pub fn new(desc: &SwDescription, cx: PlanContext<'_>) -> Result<Plan, PlanError> {
        let target_slot = cx.slots.get(cx.target);
        let software = match &target_slot.selection {
            Some(selection) => {
                let parts: Vec<&str> = selection.split(',').map(str::trim).collect();
                desc.select(&parts)?
            }
            None => desc.software()?,
        };
        check_hardware(&software, cx.hardware_revision)?;
        if let Some(entry) = software.files.first() {
            return Err(unsupported(format!(
                "files entries are not supported (first: {}); ship images for slot targets",
                entry.filename.as_deref().unwrap_or("unnamed")
            )));
        }
        let mut images = Vec::new();
        let mut used_targets = BTreeMap::new();
        for entry in &software.images {
            let image = plan_image(entry, &cx)?;
            if let Some(other) = used_targets.insert(image.target.clone(), image.name.clone()) {
                return Err(unsupported(format!(
                    "images {other} and {} both target {}",
                    image.name,
                    image.target.display()
                )));
            }
            images.push(image);
        }
        if images.is_empty() {
            return Err(PlanError::NoImages {
                target: cx.target,
                selection: target_slot.selection.clone(),
            });
        }
        let scripts = software
            .scripts
            .iter()
            .map(plan_script)
            .collect::<Result<_, _>>()?;
        let mut bootenv = Vec::new();
        for entry in &software.bootenv {
            match (&entry.name, &entry.value, &entry.filename) {
                (Some(name), value, None) => {
                    bootenv.push((name.clone(), value.clone().unwrap_or_default()))
                }
                _ => {
                    return Err(unsupported(
                        "bootenv entries must be name/value pairs (bootenv script files are not supported)"
                            .into(),
                    ))
                }
            }
        }
        Ok(Plan {
            version: software.version.clone(),
            images,
            scripts,
            bootenv,
        })
    }

    /// Does the bundle need the AES key?
    pub fn encrypted(&self) -> bool {
        self.images.iter().any(|i| i.decode.encrypted.is_some())
    }
}

fn check_hardware(software: &Software, revision: Option<&str>) -> Result<(), PlanError> {
    let Some(revision) = revision else {
        return Ok(());
    };
    match &software.hardware_compatibility {
        Some(list) if list.iter().any(|r| r == revision) => Ok(()),
        Some(list) => Err(PlanError::Incompatible(format!(
            "hardware revision {revision} not in hardware-compatibility ({})",
            list.join(", ")
        ))),
        None => Err(PlanError::Incompatible(format!(
            "sw-description has no hardware-compatibility (device is {revision})"
        ))),
    }
}

fn plan_image(entry: &Entry, cx: &PlanContext<'_>) -> Result<PlannedImage, PlanError> {
    let name = entry.filename.clone().unwrap_or_default();
    let kind_name = entry.kind.as_deref().unwrap_or("raw");
    let kind = match kind_name {
        "raw" | "rawfile" => ImageKind::Raw,
        DELTA_TYPE => ImageKind::Delta,
        CHUNKED_TYPE => ImageKind::Chunked,
        _ => {
            return Err(unsupported(format!(
                "image {name}: handler type {kind_name:?} is not supported (raw, rawfile, {DELTA_TYPE}, {CHUNKED_TYPE})"
            )))
        }
    };
    if kind == ImageKind::Chunked
        && (entry.encrypted || entry.compressed.as_deref().is_some_and(|c| c != "false"))
    {
        return Err(unsupported(format!(
            "image {name}: a {CHUNKED_TYPE} index is neither encrypted nor compressed"
        )));
    }
    if let Some(c) = entry.compressed.as_deref() {
        if !matches!(c, "" | "false" | "zstd") {
            return Err(unsupported(format!(
                "image {name}: compressed={c:?} is not supported (zstd)"
            )));
        }
    }
    let device = entry
        .device
        .as_deref()
        .or(entry.path.as_deref())
        .ok_or_else(|| unsupported(format!("image {name}: no device")))?;
    let target = resolve_target(&name, device, cx)?;
    let sha256 = entry.sha256.ok_or_else(|| {
        unsupported(format!(
            "image {name}: no sha256 (required for every image)"
        ))
    })?;
    let target_name = cx
        .slots
        .get(cx.target)
        .targets
        .iter()
        .find(|(_, p)| **p == target)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    let seed = match kind {
        ImageKind::Raw => None,
        ImageKind::Delta | ImageKind::Chunked => Some(
            cx.slots
                .get(cx.booted)
                .targets
                .get(&target_name)
                .cloned()
                .ok_or_else(|| {
                    unsupported(format!("image {name}: no seed target {target_name:?}"))
                })?,
        ),
    };
    Ok(PlannedImage {
        name,
        kind,
        decode: Decode {
            encrypted: entry.encrypted.then(|| entry.ivt.clone()),
            zstd: entry.compressed.as_deref() == Some("zstd"),
        },
        target_name,
        target,
        seed,
        sha256,
        properties: entry.properties.clone(),
    })
}

/// Map an image's `device` (a target name or a device path) to a path of the target slot.
fn resolve_target(name: &str, device: &str, cx: &PlanContext<'_>) -> Result<PathBuf, PlanError> {
    let target_slot: &SlotConfig = cx.slots.get(cx.target);
    if let Some(path) = target_slot.targets.get(device) {
        return Ok(path.clone());
    }
    let device_path = Path::new(device);
    if target_slot.targets.values().any(|p| p == device_path) {
        return Ok(device_path.to_path_buf());
    }
    if cx
        .slots
        .get(cx.booted)
        .targets
        .values()
        .any(|p| p == device_path)
    {
        return Err(PlanError::ActiveSlot {
            image: name.to_string(),
            device: device.to_string(),
            booted: cx.booted,
        });
    }
    Err(unsupported(format!(
        "image {name}: device {device:?} is neither a target name ({}) nor a path of slot {}",
        target_slot
            .targets
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        cx.target
    )))
}

fn plan_script(entry: &Entry) -> Result<PlannedScript, PlanError> {
    let name = entry.filename.clone().unwrap_or_default();
    let kind = match entry.kind.as_deref().unwrap_or("lua") {
        "shellscript" => ScriptKind::Shell,
        "preinstall" => ScriptKind::Pre,
        "postinstall" => ScriptKind::Post,
        other => {
            return Err(unsupported(format!(
            "script {name}: type {other:?} is not supported (shellscript, preinstall, postinstall)"
        )))
        }
    };
    let sha256 = entry
        .sha256
        .ok_or_else(|| unsupported(format!("script {name}: no sha256")))?;
    Ok(PlannedScript { name, kind, sha256 })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
