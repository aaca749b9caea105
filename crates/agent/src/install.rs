//! Streaming install of a `.swu` into the inactive slot.
//!
//! Order of events (each step starts only when the previous one is durable):
//! 1. `sw-description` and its CMS signature are read and verified: nothing is written before.
//! 2. The description is resolved for the target slot (selection, hardware compatibility,
//!    every image mapped to a target of the *inactive* slot, every image hashed).
//! 3. State file: transaction `installing`. Bootloader: target made unbootable.
//! 4. Each member streams straight from the source into its target (hash of the stored bytes
//!    computed on the way, AES-CBC decrypted on the fly), is checked against its sha256 and
//!    fsynced. Pre-install scripts run before the first image byte is written.
//! 5. Post-install scripts run.
//! 6. State file: `activating`; bootloader: one env commit switches to the target
//!    (INSTALLED); state file: `activated`.
//!
//! Any error before step 6 leaves the target unbootable and records a failed result.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keel_formats::swdesc::{hex, Entry, SwDescription};
use keel_formats::swu::SwuReader;
use sha2::{Digest, Sha256};

use crate::agent::{Agent, AgentError};
use crate::bootloader::BootError;
use crate::config::SlotId;
use crate::io::SlotWriter;
use crate::state::{now, AgentState, Outcome, Phase, Transaction};

/// sw-description image `type` of a keel static delta (`keel_delta`): the member is a delta
/// against the same target of the booted slot; the result is written into the inactive slot.
pub const DELTA_TYPE: &str = "keel-delta";

/// Bytes accepted after the cpio trailer (cpio tools pad to 512 bytes; some to 10 KiB blocks).
pub const MAX_TRAILING_BYTES: u64 = 64 * 1024;

/// Largest script accepted (scripts are held in memory until they run).
pub const MAX_SCRIPT_SIZE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("bundle: {0}")]
    Bundle(#[from] keel_formats::swu::SwuError),
    #[error("sw-description: {0}")]
    Description(#[from] keel_formats::swdesc::ParseError),
    #[error(
        "bundle is not signed (no sw-description.sig); keel-agent installs signed bundles only"
    )]
    Unsigned,
    #[error("sw-description signature rejected: {0}")]
    Signature(String),
    #[error("trust anchors {path}: {reason}")]
    Trust { path: String, reason: String },
    #[error("AES key: {0}")]
    Key(String),
    #[error("bundle not for this device: {0}")]
    Incompatible(String),
    #[error("sw-description: {0}")]
    Plan(String),
    #[error("refusing to write the active slot: image {image} targets {device}, which belongs to the booted slot {booted}")]
    ActiveSlot {
        image: String,
        device: String,
        booted: SlotId,
    },
    #[error("image {name}: sha256 mismatch: bundle has {actual}, sw-description says {expected}")]
    HashMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("image {name}: {message}")]
    Image { name: String, message: String },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("image(s) listed in sw-description but missing from the bundle: {0}")]
    Missing(String),
    #[error("script {name} ({stage}) failed: {reason}")]
    Script {
        name: String,
        stage: &'static str,
        reason: String,
    },
}

/// Knobs of one install.
#[derive(Default)]
pub struct InstallOptions<'a> {
    /// Bytes per write to the slot (default 64 KiB).
    pub chunk_size: Option<usize>,
    /// Server action id to remember for the post-reboot report.
    pub action_id: Option<String>,
    /// Called with (bytes of images written so far, total image bytes in the bundle).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub booted: SlotId,
    pub target: SlotId,
    pub version: Option<String>,
    pub signer: String,
    /// (image file name, target path, bytes written) in bundle order.
    pub images: Vec<(String, PathBuf, u64)>,
}

#[derive(Debug, Clone)]
struct PlannedImage {
    entry: Entry,
    target: PathBuf,
    /// For deltas: the same target of the booted slot.
    seed: Option<PathBuf>,
    sha256: [u8; 32],
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptKind {
    /// SWUpdate `shellscript`: run with `preinst` before and `postinst` after the images.
    Shell,
    Pre,
    Post,
}

#[derive(Debug, Clone)]
struct PlannedScript {
    name: String,
    kind: ScriptKind,
    sha256: [u8; 32],
    body: Option<Vec<u8>>,
}

struct Plan {
    version: Option<String>,
    images: Vec<PlannedImage>,
    scripts: Vec<PlannedScript>,
    bootenv: Vec<(String, String)>,
}

/// Reads `n` bytes into memory for small members (scripts), hashing them.
fn read_small(mut reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.by_ref().take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(out)
}

/// Passes bytes through while hashing them.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(data) = buf.get(..n) {
            self.hasher.update(data);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Fill `buf` as far as the reader allows; returns the byte count (0 only at the end).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Agent {
    fn verifier(&self) -> Result<keel_sign::Verifier, InstallError> {
        let path = &self.config.trusted_certs;
        let pem = std::fs::read(path).map_err(|e| InstallError::Trust {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        keel_sign::Verifier::from_pem(&pem).map_err(|e| InstallError::Trust {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn aes_key(&self) -> Result<keel_sign::aes::AesKey, InstallError> {
        let path = self.config.aes_key.as_ref().ok_or_else(|| {
            InstallError::Key("the bundle has encrypted images but no aes_key is configured".into())
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| InstallError::Key(format!("{}: {e}", path.display())))?;
        keel_sign::aes::AesKey::parse_keyfile(&text)
            .map_err(|e| InstallError::Key(format!("{}: {e}", path.display())))
    }

    /// Map an image's `device` (a target name or a device path) to a path of the target slot.
    fn resolve_target(
        &self,
        name: &str,
        device: &str,
        booted: SlotId,
        target: SlotId,
    ) -> Result<PathBuf, InstallError> {
        let target_slot = self.config.slots.get(target);
        let booted_slot = self.config.slots.get(booted);
        if let Some(path) = target_slot.targets.get(device) {
            return Ok(path.clone());
        }
        let device_path = Path::new(device);
        if target_slot.targets.values().any(|p| p == device_path) {
            return Ok(device_path.to_path_buf());
        }
        if booted_slot.targets.values().any(|p| p == device_path) {
            return Err(InstallError::ActiveSlot {
                image: name.to_string(),
                device: device.to_string(),
                booted,
            });
        }
        Err(InstallError::Plan(format!(
            "image {name}: device {device:?} is neither a target name ({}) nor a path of slot {target}",
            target_slot
                .targets
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn plan(
        &self,
        desc: &SwDescription,
        booted: SlotId,
        target: SlotId,
    ) -> Result<Plan, InstallError> {
        let software = match &self.config.slots.get(target).selection {
            Some(selection) => {
                let parts: Vec<&str> = selection.split(',').map(str::trim).collect();
                desc.select(&parts)?
            }
            None => desc.software()?,
        };
        if let Some(revision) = &self.config.hardware_revision {
            match &software.hardware_compatibility {
                Some(list) if list.iter().any(|r| r == revision) => {}
                Some(list) => {
                    return Err(InstallError::Incompatible(format!(
                        "hardware revision {revision} not in hardware-compatibility {list:?}"
                    )))
                }
                None => {
                    return Err(InstallError::Incompatible(format!(
                        "sw-description has no hardware-compatibility (device is {revision})"
                    )))
                }
            }
        }
        if let Some(entry) = software.files.first() {
            return Err(InstallError::Plan(format!(
                "files entries are not supported (first: {:?}); ship images for slot targets",
                entry.filename
            )));
        }
        let mut images = Vec::new();
        let mut used_targets = BTreeMap::new();
        for entry in &software.images {
            let name = entry.filename.clone().unwrap_or_default();
            let kind = entry.kind.as_deref().unwrap_or("raw");
            if !matches!(kind, "raw" | "rawfile" | DELTA_TYPE) {
                return Err(InstallError::Plan(format!(
                    "image {name}: handler type {kind:?} is not supported (raw, rawfile, {DELTA_TYPE})"
                )));
            }
            if let Some(c) = entry.compressed.as_deref() {
                if !matches!(c, "" | "false" | "zstd") {
                    return Err(InstallError::Plan(format!(
                        "image {name}: compressed={c:?} is not supported (zstd)"
                    )));
                }
            }
            let device = entry
                .device
                .as_deref()
                .or(entry.path.as_deref())
                .ok_or_else(|| InstallError::Plan(format!("image {name}: no device")))?;
            let path = self.resolve_target(&name, device, booted, target)?;
            if let Some(other) = used_targets.insert(path.clone(), name.clone()) {
                return Err(InstallError::Plan(format!(
                    "images {other} and {name} both target {}",
                    path.display()
                )));
            }
            let sha256 = entry.sha256.ok_or_else(|| {
                InstallError::Plan(format!(
                    "image {name}: no sha256 (required for every image)"
                ))
            })?;
            let seed = if kind == DELTA_TYPE {
                let target_name = self
                    .config
                    .slots
                    .get(target)
                    .targets
                    .iter()
                    .find(|(_, p)| **p == path)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                Some(
                    self.config
                        .slots
                        .get(booted)
                        .targets
                        .get(&target_name)
                        .cloned()
                        .ok_or_else(|| {
                            InstallError::Plan(format!(
                                "image {name}: no seed target {target_name:?}"
                            ))
                        })?,
                )
            } else {
                None
            };
            images.push(PlannedImage {
                entry: entry.clone(),
                target: path,
                seed,
                sha256,
                done: false,
            });
        }
        if images.is_empty() {
            // Activating a slot nothing was written to would boot whatever it held before.
            return Err(InstallError::Plan(format!(
                "no images for slot {target}{}",
                match &self.config.slots.get(target).selection {
                    Some(sel) => format!(" in selection {sel}"),
                    None => " (is a selection needed?)".to_string(),
                }
            )));
        }
        let mut scripts = Vec::new();
        for entry in &software.scripts {
            let name = entry.filename.clone().unwrap_or_default();
            let kind = match entry.kind.as_deref().unwrap_or("lua") {
                "shellscript" => ScriptKind::Shell,
                "preinstall" => ScriptKind::Pre,
                "postinstall" => ScriptKind::Post,
                other => {
                    return Err(InstallError::Plan(format!(
                        "script {name}: type {other:?} is not supported (shellscript, preinstall, postinstall)"
                    )))
                }
            };
            let sha256 = entry
                .sha256
                .ok_or_else(|| InstallError::Plan(format!("script {name}: no sha256")))?;
            scripts.push(PlannedScript {
                name,
                kind,
                sha256,
                body: None,
            });
        }
        let mut bootenv = Vec::new();
        for entry in &software.bootenv {
            match (&entry.name, &entry.value, &entry.filename) {
                (Some(name), value, None) => {
                    bootenv.push((name.clone(), value.clone().unwrap_or_default()))
                }
                _ => {
                    return Err(InstallError::Plan(
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

    fn run_script(
        &self,
        script: &PlannedScript,
        stage: &'static str,
        booted: SlotId,
        target: SlotId,
    ) -> Result<(), InstallError> {
        let body = script.body.as_ref().ok_or_else(|| InstallError::Script {
            name: script.name.clone(),
            stage,
            reason: "script member not found before it had to run".into(),
        })?;
        let mut command = Command::new("sh");
        command
            .arg("-s")
            .arg(stage)
            .env("KEEL_BOOTED_SLOT", booted.as_str())
            .env("KEEL_TARGET_SLOT", target.as_str())
            .stdin(Stdio::piped());
        for (name, path) in &self.config.slots.get(target).targets {
            let var: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            command.env(format!("KEEL_TARGET_{var}"), path);
        }
        let err = |reason: String| InstallError::Script {
            name: script.name.clone(),
            stage,
            reason,
        };
        let mut child = command.spawn().map_err(|e| err(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(body).map_err(|e| err(e.to_string()))?;
        }
        let status = child.wait().map_err(|e| err(e.to_string()))?;
        if !status.success() {
            return Err(err(status.to_string()));
        }
        Ok(())
    }

    fn run_scripts(
        &self,
        plan: &Plan,
        pre: bool,
        booted: SlotId,
        target: SlotId,
    ) -> Result<(), InstallError> {
        let stage = if pre { "preinst" } else { "postinst" };
        for script in &plan.scripts {
            let runs = match script.kind {
                ScriptKind::Shell => true,
                ScriptKind::Pre => pre,
                ScriptKind::Post => !pre,
            };
            if runs {
                self.run_script(script, stage, booted, target)?;
            }
        }
        Ok(())
    }

    /// Install a bundle read from `source`. See the module docs for the order of events.
    pub fn install(
        &mut self,
        source: impl Read,
        mut options: InstallOptions<'_>,
    ) -> Result<InstallReport, InstallError> {
        let _lock = self.lock()?;
        let mut swu = SwuReader::new(source);
        let members = swu.read_description()?;
        let signature = members.signature.as_deref().ok_or(InstallError::Unsigned)?;
        let signer = self
            .verifier()?
            .verify_detached(&members.description, signature)
            .map_err(|e| InstallError::Signature(e.to_string()))?;
        let desc = SwDescription::parse(&members.description)?;

        let (mut state, booted, target) = self.preflight()?;
        let mut plan = self.plan(&desc, booted, target)?;
        let key = if plan.images.iter().any(|i| i.entry.encrypted) {
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
        self.store_state(&state)?;

        let result = self.install_inner(
            &mut swu,
            &mut plan,
            key.as_ref(),
            booted,
            target,
            &mut state,
            &mut options,
        );
        match result {
            Ok(images) => Ok(InstallReport {
                booted,
                target,
                version: plan.version,
                signer: signer.subject,
                images,
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

    #[allow(clippy::too_many_arguments)]
    fn install_inner<R: Read>(
        &mut self,
        swu: &mut SwuReader<R>,
        plan: &mut Plan,
        key: Option<&keel_sign::aes::AesKey>,
        booted: SlotId,
        target: SlotId,
        state: &mut AgentState,
        options: &mut InstallOptions<'_>,
    ) -> Result<Vec<(String, PathBuf, u64)>, InstallError> {
        self.bootloader.begin_install(booted, target)?;

        let chunk_size = options.chunk_size.unwrap_or(64 * 1024).max(512);
        let mut buf = vec![0u8; chunk_size];
        let mut written_images = Vec::new();
        let mut pre_scripts_run = false;
        let mut seen = std::collections::BTreeSet::new();
        let mut progress_bytes = 0u64;
        let mut total_bytes = 0u64;

        while let Some(mut member) = swu.next_member()? {
            let name = member.name.clone();
            if !seen.insert(name.clone()) {
                return Err(InstallError::Plan(format!(
                    "member {name} appears twice in the bundle"
                )));
            }
            if let Some(script) = plan.scripts.iter_mut().find(|s| s.name == name) {
                let mut hashing = HashingReader {
                    inner: &mut member,
                    hasher: Sha256::new(),
                    count: 0,
                };
                let body =
                    read_small(&mut hashing, MAX_SCRIPT_SIZE).map_err(|e| InstallError::Image {
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                let actual: [u8; 32] = hashing.hasher.finalize().into();
                if actual != script.sha256 {
                    return Err(InstallError::HashMismatch {
                        name,
                        expected: hex(&script.sha256),
                        actual: hex(&actual),
                    });
                }
                script.body = Some(body);
                continue;
            }
            let Some(index) = plan
                .images
                .iter()
                .position(|i| i.entry.filename.as_deref() == Some(name.as_str()))
            else {
                // A member of another selection (e.g. copy1 while installing copy2): skip it.
                io::copy(&mut member, &mut io::sink()).map_err(|e| InstallError::Image {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
                continue;
            };
            if !pre_scripts_run {
                self.run_scripts(plan, true, booted, target)?;
                pre_scripts_run = true;
            }
            total_bytes += member.size;
            let image = plan
                .images
                .get(index)
                .cloned()
                .ok_or_else(|| InstallError::Plan("image index".into()))?;
            let mut slot = SlotWriter::open(&self.storage, self.os_direct, &image.target).map_err(
                |source| InstallError::Write {
                    path: image.target.display().to_string(),
                    source,
                },
            )?;
            let mut hashing = HashingReader {
                inner: &mut member,
                hasher: Sha256::new(),
                count: 0,
            };
            let image_err = |message: String| InstallError::Image {
                name: name.clone(),
                message,
            };
            {
                let mut decrypted;
                let reader: &mut dyn Read = if image.entry.encrypted {
                    let key = key.ok_or_else(|| InstallError::Key("no AES key".into()))?;
                    let iv = match image.entry.ivt.as_deref() {
                        Some(ivt) => parse_hex::<16>(ivt).ok_or_else(|| {
                            image_err(format!("ivt {ivt:?} is not 32 hex digits"))
                        })?,
                        None => key.iv,
                    };
                    decrypted = keel_sign::aes::DecryptReader::new(&mut hashing, &key.key, &iv);
                    &mut decrypted
                } else {
                    &mut hashing
                };
                let mut decompressed;
                let reader: &mut dyn Read = if image.entry.compressed.as_deref() == Some("zstd") {
                    decompressed = zstd::stream::read::Decoder::new(reader)
                        .map_err(|e| image_err(format!("zstd: {e}")))?;
                    &mut decompressed
                } else {
                    reader
                };
                let write_err = |source: io::Error| InstallError::Write {
                    path: image.target.display().to_string(),
                    source,
                };
                if let Some(seed) = &image.seed {
                    let mut seed = crate::io::SlotReader::new(self.storage.clone(), seed);
                    let mut sink = crate::io::ChunkedSlot::new(&mut slot, chunk_size);
                    keel_delta::apply(&mut seed, reader, &mut sink)
                        .map_err(|e| image_err(format!("delta: {e}")))?;
                    sink.finish().map_err(write_err)?;
                    progress_bytes = progress_bytes.saturating_add(slot.written());
                    if let Some(progress) = options.progress.as_mut() {
                        progress(progress_bytes, total_bytes);
                    }
                } else {
                    loop {
                        let n =
                            read_full(reader, &mut buf).map_err(|e| image_err(e.to_string()))?;
                        if n == 0 {
                            break;
                        }
                        let data = buf.get(..n).unwrap_or_default();
                        slot.write_all(data).map_err(write_err)?;
                        progress_bytes += n as u64;
                        if let Some(progress) = options.progress.as_mut() {
                            progress(progress_bytes, total_bytes);
                        }
                    }
                }
            }
            // Drain anything the decrypter did not need (a well-formed member has nothing left).
            io::copy(&mut hashing, &mut io::sink()).map_err(|e| image_err(e.to_string()))?;
            let actual: [u8; 32] = hashing.hasher.finalize().into();
            if actual != image.sha256 {
                return Err(InstallError::HashMismatch {
                    name,
                    expected: hex(&image.sha256),
                    actual: hex(&actual),
                });
            }
            slot.sync().map_err(|source| InstallError::Write {
                path: image.target.display().to_string(),
                source,
            })?;
            if let Some(planned) = plan.images.get_mut(index) {
                planned.done = true;
            }
            written_images.push((name, image.target.clone(), slot.written()));
        }

        // Read the source to its end (the cpio padding after the trailer) before activating:
        // a verifying source (TUF: whole-artifact length and hashes) reports a mismatch only
        // at its end, and that must fail the install while the target is still unbootable.
        let mut rest = swu.get_mut().take(MAX_TRAILING_BYTES + 1);
        let trailing = io::copy(&mut rest, &mut io::sink()).map_err(|e| InstallError::Image {
            name: "(end of bundle)".into(),
            message: e.to_string(),
        })?;
        if trailing > MAX_TRAILING_BYTES {
            return Err(InstallError::Plan(format!(
                "more than {MAX_TRAILING_BYTES} bytes after the cpio trailer"
            )));
        }

        let missing: Vec<String> = plan
            .images
            .iter()
            .filter(|i| !i.done)
            .filter_map(|i| i.entry.filename.clone())
            .collect();
        if !missing.is_empty() {
            return Err(InstallError::Missing(missing.join(", ")));
        }
        // Read the bundle to its very end (the cpio padding after the trailer): a verifying source
        // (TUF, docs/tuf.md) checks length and hashes at end of stream, before anything is activated.
        io::copy(swu.get_mut(), &mut io::sink()).map_err(|e| InstallError::Image {
            name: "(end of bundle)".into(),
            message: e.to_string(),
        })?;
        if !pre_scripts_run {
            self.run_scripts(plan, true, booted, target)?;
        }
        self.run_scripts(plan, false, booted, target)?;

        if let Some(tx) = state.transaction.as_mut() {
            tx.phase = Phase::Activating;
        }
        self.store_state(state)?;
        self.bootloader.activate(booted, target, &plan.bootenv)?;
        if let Some(tx) = state.transaction.as_mut() {
            tx.phase = Phase::Activated;
        }
        self.store_state(state)?;
        Ok(written_images)
    }
}
