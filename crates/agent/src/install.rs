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

use keel_formats::names::properties::{PACK, TARGET_SHA256, TARGET_SIZE};
use keel_formats::swdesc::{hex, Entry, SwDescription};
use keel_formats::swu::SwuReader;
use sha2::{Digest, Sha256};

use crate::agent::{Agent, AgentError};
use crate::bootloader::BootError;
use crate::chunks::{PackSource, SlotFile, SlotStream, CHUNKED_TYPE, MAX_INDEX_SIZE};
use crate::config::SlotId;
use crate::io::SlotWriter;
use crate::state::{now, AgentState, Outcome, Phase, SlotImage, Transaction};

/// sw-description image `type` of a keel static delta; the result is written into the inactive slot.
pub use keel_formats::swdesc::KEEL_DELTA_TYPE as DELTA_TYPE;

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
    /// Where the packs of `keel-chunked` images are (docs/delta-format.md).
    pub packs: PackSource,
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
    pub fetched_chunks: u64,
    pub seed_chunks: u64,
    /// Images whose seed chunks came from the kept index of the booted slot (no seed scan).
    pub kept_indexes: u64,
    /// Chunks already correct in the target (an interrupted earlier install).
    pub kept_chunks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageKind {
    Raw,
    /// keel static delta against the same target of the booted slot.
    Delta,
    /// Chunk index; chunks from the booted slot, the target itself, or a pack.
    Chunked,
}

#[derive(Debug, Clone)]
struct PlannedImage {
    entry: Entry,
    kind: ImageKind,
    /// Target name in the slot configuration (`rootfs`).
    target_name: String,
    target: PathBuf,
    /// For deltas and chunked images: the same target of the booted slot.
    seed: Option<PathBuf>,
    sha256: [u8; 32],
    done: bool,
    /// What the target holds once written (recorded in the state file, reported to the server).
    written: Option<SlotImage>,
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
            let image_kind = match kind {
                "raw" | "rawfile" => ImageKind::Raw,
                DELTA_TYPE => ImageKind::Delta,
                CHUNKED_TYPE => ImageKind::Chunked,
                _ => {
                    return Err(InstallError::Plan(format!(
                        "image {name}: handler type {kind:?} is not supported (raw, rawfile, {DELTA_TYPE}, {CHUNKED_TYPE})"
                    )))
                }
            };
            if image_kind == ImageKind::Chunked
                && (entry.encrypted || entry.compressed.as_deref().is_some_and(|c| c != "false"))
            {
                return Err(InstallError::Plan(format!(
                    "image {name}: a {CHUNKED_TYPE} index is neither encrypted nor compressed"
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
            let target_name = self
                .config
                .slots
                .get(target)
                .targets
                .iter()
                .find(|(_, p)| **p == path)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let seed = if image_kind != ImageKind::Raw {
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
                kind: image_kind,
                target_name,
                target: path,
                seed,
                sha256,
                done: false,
                written: None,
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

    /// A `keel-chunked` image: `member` is its chunk index. The index is read whole (bounded) and
    /// checked against the signed sha256 before anything is written; then the image is assembled
    /// in the target from chunks of the booted slot, chunks the target already holds, and the
    /// pack, every chunk and the whole image verified (`keel_delta::chunk::assemble`).
    fn install_chunked(
        &self,
        image: &PlannedImage,
        member: &mut dyn Read,
        (booted, target): (SlotId, SlotId),
        seed_record: Option<SlotImage>,
        packs: &PackSource,
        stats: &mut ChunkedStats,
    ) -> Result<SlotImage, InstallError> {
        use keel_delta::chunk::{assemble, plan, ChunkIndex, SeedChunks};
        let name = image.entry.filename.clone().unwrap_or_default();
        let image_err = |message: String| InstallError::Image {
            name: name.clone(),
            message,
        };
        let mut hashing = HashingReader {
            inner: member,
            hasher: Sha256::new(),
            count: 0,
        };
        let bytes = read_small(&mut hashing, MAX_INDEX_SIZE)
            .map_err(|e| image_err(format!("chunk index: {e}")))?;
        let actual: [u8; 32] = hashing.hasher.finalize().into();
        if actual != image.sha256 {
            return Err(InstallError::HashMismatch {
                name,
                expected: hex(&image.sha256),
                actual: hex(&actual),
            });
        }
        let index =
            ChunkIndex::from_bytes(&bytes).map_err(|e| image_err(format!("chunk index: {e}")))?;
        let property = |key: &str| {
            image
                .entry
                .properties
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.first())
                .map(String::as_str)
        };
        let target_sha256 = property(TARGET_SHA256)
            .and_then(parse_hex::<32>)
            .ok_or_else(|| {
                image_err(format!(
                    "properties: {TARGET_SHA256} missing or not 64 hex digits"
                ))
            })?;
        if index.image_sha256 != target_sha256 {
            return Err(image_err(format!(
                "chunk index describes image {}, properties say {TARGET_SHA256} {}",
                hex(&index.image_sha256),
                hex(&target_sha256)
            )));
        }
        if let Some(size) = property(TARGET_SIZE) {
            if size.trim().parse::<u64>().ok() != Some(index.image_size) {
                return Err(image_err(format!(
                    "chunk index describes {} bytes, properties say {TARGET_SIZE} \"{size}\"",
                    index.image_size
                )));
            }
        }
        let pack_name = property(PACK)
            .ok_or_else(|| image_err(format!("properties: no {PACK} (the pack file name)")))?;
        let write_err = |source: io::Error| InstallError::Write {
            path: image.target.display().to_string(),
            source,
        };
        let info = self.storage.metadata(&image.target).map_err(write_err)?;
        if !info.regular && index.image_size > info.len {
            return Err(write_err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "image of {} bytes does not fit into {} ({} bytes)",
                    index.image_size,
                    image.target.display(),
                    info.len
                ),
            )));
        }
        let seed_path = image
            .seed
            .as_ref()
            .ok_or_else(|| image_err("no seed slot".into()))?;
        let seed_err = |e: io::Error| image_err(format!("seed {}: {e}", seed_path.display()));
        // The index kept from the chunked install that wrote the booted slot saves scanning it
        // (its chunks are re-hashed when used); otherwise the seed is chunked and hashed, only as
        // far as the recorded image size when it is known.
        let kept = seed_record.as_ref().and_then(|record| {
            let path = self.kept_index_path(booted, &image.target_name);
            let kept = ChunkIndex::from_bytes(&self.storage.read(&path).ok()?).ok()?;
            (hex(&kept.image_sha256) == record.sha256 && kept.params == index.params)
                .then_some(kept)
        });
        let seed_chunks = match &kept {
            Some(kept) => SeedChunks::from_index(kept),
            None => {
                let stream = SlotStream::open(self.storage.clone(), seed_path).map_err(seed_err)?;
                let len = seed_record.as_ref().map_or(u64::MAX, |r| r.size);
                SeedChunks::scan(stream.take(len), index.params)
                    .map_err(|e| image_err(format!("scanning seed {}: {e}", seed_path.display())))?
            }
        };
        stats.kept_indexes += u64::from(kept.is_some());
        drop(kept);
        let download = plan(&index, &seed_chunks);
        drop(seed_chunks);
        let mut pack = packs
            .open(pack_name, &crate::source::http_agent())
            .map_err(image_err)?;
        let mut out = SlotFile::open(&self.storage, self.env, &image.target).map_err(write_err)?;
        let mut seed = crate::io::SlotReader::new(self.storage.clone(), seed_path);
        let report = assemble(&index, &download, &mut seed, &mut pack, &mut out)
            .map_err(|e| image_err(format!("{CHUNKED_TYPE}: {e}")))?;
        out.sync().map_err(write_err)?;
        // For the next update from this slot (valid only while the state file's record of the
        // target has the same image hash, which it gets at activation).
        let kept_path = self.kept_index_path(target, &image.target_name);
        self.ensure_state_dir();
        crate::io::replace_atomic(self.storage.as_ref(), &kept_path, &bytes).map_err(|source| {
            InstallError::Write {
                path: kept_path.display().to_string(),
                source,
            }
        })?;
        stats.image_bytes += index.image_size;
        stats.fetched_bytes += pack.bytes;
        stats.requests += pack.requests;
        stats.fetched_chunks += report.fetched_chunks;
        stats.seed_chunks += report.from_seed;
        stats.kept_chunks += report.already_in_target;
        Ok(SlotImage {
            sha256: hex(&index.image_sha256),
            size: index.image_size,
            version: None,
        })
    }

    /// Where the chunk index of a chunked install into `slot`'s `target` is kept.
    fn kept_index_path(&self, slot: SlotId, target: &str) -> PathBuf {
        let name: String = target
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.config.state_dir.join(format!("{slot}-{name}.kidx"))
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
        // The targets about to be written no longer hold what the state file says they hold.
        if let Some(records) = state.slots.get_mut(&target) {
            for image in &plan.images {
                records.remove(&image.target_name);
            }
        }
        self.store_state(&state)?;

        let mut chunked = ChunkedStats::default();
        let result = self.install_inner(
            &mut swu,
            &mut plan,
            key.as_ref(),
            booted,
            target,
            &mut state,
            &mut options,
            &mut chunked,
        );
        match result {
            Ok(images) => Ok(InstallReport {
                booted,
                target,
                version: plan.version,
                signer: signer.subject,
                images,
                chunked,
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
        chunked: &mut ChunkedStats,
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
            if image.kind == ImageKind::Chunked {
                let seed_record = state
                    .slots
                    .get(&booted)
                    .and_then(|t| t.get(&image.target_name))
                    .cloned();
                let slots = (booted, target);
                let written = self.install_chunked(
                    &image,
                    &mut member,
                    slots,
                    seed_record,
                    &options.packs,
                    chunked,
                )?;
                progress_bytes = progress_bytes.saturating_add(written.size);
                if let Some(progress) = options.progress.as_mut() {
                    progress(progress_bytes, total_bytes);
                }
                written_images.push((name, image.target.clone(), written.size));
                if let Some(planned) = plan.images.get_mut(index) {
                    planned.done = true;
                    planned.written = Some(written);
                }
                continue;
            }
            let mut slot =
                SlotWriter::open(&self.storage, self.env, &image.target).map_err(|source| {
                    InstallError::Write {
                        path: image.target.display().to_string(),
                        source,
                    }
                })?;
            let mut hashing = HashingReader {
                inner: &mut member,
                hasher: Sha256::new(),
                count: 0,
            };
            let image_err = |message: String| InstallError::Image {
                name: name.clone(),
                message,
            };
            let written_record;
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
                    let report = keel_delta::apply(&mut seed, reader, &mut sink)
                        .map_err(|e| image_err(format!("delta: {e}")))?;
                    sink.finish().map_err(write_err)?;
                    written_record = Some(SlotImage {
                        sha256: hex(&report.target_sha256),
                        size: report.target_size,
                        version: None,
                    });
                    progress_bytes = progress_bytes.saturating_add(slot.written());
                    if let Some(progress) = options.progress.as_mut() {
                        progress(progress_bytes, total_bytes);
                    }
                } else {
                    // The stored bytes' hash is the image's unless they are transformed.
                    let mut output_hash = (image.entry.encrypted
                        || image.entry.compressed.as_deref() == Some("zstd"))
                    .then(Sha256::new);
                    loop {
                        let n =
                            read_full(reader, &mut buf).map_err(|e| image_err(e.to_string()))?;
                        if n == 0 {
                            break;
                        }
                        let data = buf.get(..n).unwrap_or_default();
                        if let Some(h) = output_hash.as_mut() {
                            h.update(data);
                        }
                        slot.write_all(data).map_err(write_err)?;
                        progress_bytes += n as u64;
                        if let Some(progress) = options.progress.as_mut() {
                            progress(progress_bytes, total_bytes);
                        }
                    }
                    written_record = Some(SlotImage {
                        sha256: hex(&output_hash.map_or(image.sha256, |h| h.finalize().into())),
                        size: slot.written(),
                        version: None,
                    });
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
                planned.written = written_record;
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
        let records = state.slots.entry(target).or_default();
        for image in &plan.images {
            if let Some(written) = &image.written {
                let mut record = written.clone();
                record.version = plan.version.clone();
                records.insert(image.target_name.clone(), record);
            }
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
