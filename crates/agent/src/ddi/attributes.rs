//! The booted slot as DDI attributes, so the server can offer deltas against what it holds.

use std::collections::BTreeMap;
use std::io::Read;

use keel_formats::names::attributes as names;

use crate::agent::{Agent, AgentError};
use crate::chunks::SlotStream;
use crate::config::SlotId;
use crate::state::{AgentState, SlotImage};

/// DDI attribute naming the `ZSTD_versionNumber()` the agent recompresses zstd frames with
/// (a keel-delta entry's `zstd-frames` property must equal it).
pub const ZSTD_VERSION_ATTRIBUTE: &str = names::DELTA_ZSTD;

/// The booted slot as DDI attributes (docs/agent.md): `keel.slot`, `keel.version`,
/// `keel.delta.zstd` (the zstd version for framed deltas), per
/// target `keel.slot.<target>.sha256` / `.size` of the image it holds, and `keel.media` (the last
/// update from removable media). Targets the state file
/// has no record of are hashed once up to `factory_image_sizes` (when configured) and recorded.
pub fn slot_attributes(
    agent: &Agent,
    booted: SlotId,
) -> Result<BTreeMap<String, String>, AgentError> {
    let mut state = agent.load_state()?;
    let learned = learn_factory_images(agent, booted, &state);
    if !learned.is_empty() {
        state.slots.entry(booted).or_default().extend(learned);
        agent.store_state(&state)?;
    }
    Ok(attributes(booted, &state))
}

/// Records for the booted slot's factory images (targets `state` has no record of, hashed up to
/// `factory_image_sizes`). None while a transaction is open: its slot records are in flux.
pub(crate) fn learn_factory_images(
    agent: &Agent,
    booted: SlotId,
    state: &AgentState,
) -> BTreeMap<String, SlotImage> {
    let mut learned = BTreeMap::new();
    for (target, &size) in &agent.config.factory_image_sizes {
        let recorded = state
            .slots
            .get(&booted)
            .is_some_and(|r| r.contains_key(target));
        let Some(path) = agent.config.slots.get(booted).targets.get(target) else {
            continue;
        };
        if recorded || state.transaction.is_some() {
            continue;
        }
        match hash_prefix(agent, path, size) {
            Ok(sha256) => {
                let image = SlotImage {
                    sha256,
                    size,
                    version: None,
                };
                learned.insert(target.clone(), image);
            }
            // Not fatal: without the hash the server offers the full bundle.
            Err(e) => eprintln!(
                "keel-agent: hashing {} ({size} bytes of the factory image): {e}",
                path.display()
            ),
        }
    }
    learned
}

/// The attributes of `booted` as `state` records it.
pub(crate) fn attributes(booted: SlotId, state: &AgentState) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    attributes.insert(names::SLOT.to_string(), booted.to_string());
    // The server offers a delta that recompresses zstd frames only to this exact zstd version.
    attributes.insert(
        ZSTD_VERSION_ATTRIBUTE.to_string(),
        keel_delta::frames::zstd_version().to_string(),
    );
    if let Some(records) = state.slots.get(&booted) {
        for (target, image) in records {
            attributes.insert(
                names::slot_target(target, names::SHA256),
                image.sha256.clone(),
            );
            attributes.insert(
                names::slot_target(target, names::SIZE),
                image.size.to_string(),
            );
        }
        if let Some(version) = records.values().find_map(|r| r.version.clone()) {
            attributes.insert(names::VERSION.to_string(), version);
        }
    }
    // A local update is reported at the next contact (hawkBit has no action for it).
    if let Some(m) = &state.last_media {
        let file = m
            .bundle
            .as_deref()
            .and_then(|b| std::path::Path::new(b).file_name())
            .map_or("-".into(), |f| f.to_string_lossy().into_owned());
        let mut value = format!(
            "{} {} {file} {}",
            m.outcome,
            m.version.as_deref().unwrap_or("-"),
            m.at
        );
        // hawkBit limits attribute values to 128 characters.
        while value.len() > 128 {
            value.pop();
        }
        attributes.insert(names::MEDIA.to_string(), value);
    }
    attributes
}

fn hash_prefix(agent: &Agent, path: &std::path::Path, size: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut stream = SlotStream::open(agent.storage.clone(), path)?.take(size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        total += n as u64;
    }
    if total != size {
        return Err(std::io::Error::other(format!(
            "slot holds {total} bytes, fewer than {size}"
        )));
    }
    Ok(keel_formats::swdesc::hex(&hasher.finalize()))
}
