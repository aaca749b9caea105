//! A `keel-chunked` image: the member is its chunk index, read whole (bounded) and checked
//! against the signed sha256 before this runs. The image is assembled in the target from chunks
//! of the booted slot, chunks the target already holds, and the pack, every chunk and the whole
//! image verified (`keel_delta::chunk::assemble`).

use std::io::{self, Read};
use std::path::PathBuf;

use keel_delta::chunk::{assemble, plan, ChunkIndex, SeedChunks};
use keel_formats::names::properties::{PACK, TARGET_SHA256, TARGET_SIZE};
use keel_formats::swdesc::hex;

use super::error::{ImageError, InstallError};
use super::members::Writer;
use super::plan::PlannedImage;
use super::stream::parse_hex;
use crate::agent::Agent;
use crate::chunks::{SlotFile, SlotStream};
use crate::config::SlotId;
use crate::io::SlotReader;
use crate::state::SlotImage;

impl Agent {
    /// Where the chunk index of a chunked install into `slot`'s `target` is kept.
    fn kept_index_path(&self, slot: SlotId, target: &str) -> PathBuf {
        let name: String = target
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.config.state_dir.join(format!("{slot}-{name}.kidx"))
    }
}

/// The index's claims checked against the signed properties; returns the pack name.
fn check_properties<'i>(image: &'i PlannedImage, index: &ChunkIndex) -> Result<&'i str, String> {
    let target_sha256 = image
        .property(TARGET_SHA256)
        .and_then(parse_hex::<32>)
        .ok_or_else(|| format!("properties: {TARGET_SHA256} missing or not 64 hex digits"))?;
    if index.image_sha256 != target_sha256 {
        return Err(format!(
            "chunk index describes image {}, properties say {TARGET_SHA256} {}",
            hex(&index.image_sha256),
            hex(&target_sha256)
        ));
    }
    if let Some(size) = image.property(TARGET_SIZE) {
        if size.trim().parse::<u64>().ok() != Some(index.image_size) {
            return Err(format!(
                "chunk index describes {} bytes, properties say {TARGET_SIZE} \"{size}\"",
                index.image_size
            ));
        }
    }
    image
        .property(PACK)
        .ok_or_else(|| format!("properties: no {PACK} (the pack file name)"))
}

impl Writer<'_, '_> {
    /// Assemble `image` from its verified chunk index `bytes`; returns what the target holds.
    pub(super) fn write_chunked(
        &mut self,
        image: &PlannedImage,
        bytes: &[u8],
    ) -> Result<SlotImage, InstallError> {
        let image_err = |e: ImageError| InstallError::image(&image.name, e);
        let write_err = |e: io::Error| InstallError::write(&image.target, e);
        let (agent, storage) = (self.agent, &self.agent.storage);
        let index = ChunkIndex::from_bytes(bytes).map_err(|e| image_err(ImageError::Index(e)))?;
        let pack_name =
            check_properties(image, &index).map_err(|e| image_err(ImageError::Properties(e)))?;
        let info = storage.metadata(&image.target).map_err(write_err)?;
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
            .ok_or_else(|| image_err(ImageError::NoSeed))?;
        let seed_record = self.seed_records.get(&image.target_name);
        // The index kept from the chunked install that wrote the booted slot saves scanning it
        // (its chunks are re-hashed when used); otherwise the seed is chunked and hashed, only as
        // far as the recorded image size when it is known.
        let kept = seed_record.and_then(|record| {
            let path = agent.kept_index_path(self.slots.booted, &image.target_name);
            let kept = ChunkIndex::from_bytes(&storage.read(&path).ok()?).ok()?;
            (hex(&kept.image_sha256) == record.sha256 && kept.params == index.params)
                .then_some(kept)
        });
        let seed_chunks = match &kept {
            Some(kept) => SeedChunks::from_index(kept),
            None => {
                let seed_err = |source| ImageError::Seed {
                    path: seed_path.display().to_string(),
                    source,
                };
                let stream = SlotStream::open(storage.clone(), seed_path)
                    .map_err(|e| image_err(seed_err(e)))?;
                let len = seed_record.map_or(u64::MAX, |r| r.size);
                SeedChunks::scan(stream.take(len), index.params).map_err(|source| {
                    image_err(ImageError::SeedScan {
                        path: seed_path.display().to_string(),
                        source,
                    })
                })?
            }
        };
        self.chunked.kept_indexes += u64::from(kept.is_some());
        drop(kept);
        let download = plan(&index, &seed_chunks);
        drop(seed_chunks);
        let http = crate::source::http_agent(&agent.config.tls)
            .map_err(|e| image_err(ImageError::Pack(e)))?;
        let mut pack = self
            .packs
            .open(pack_name, &http)
            .map_err(|e| image_err(ImageError::Pack(e)))?;
        let mut out = SlotFile::open(storage, agent.env, &image.target).map_err(write_err)?;
        let mut seed = SlotReader::new(storage.clone(), seed_path);
        let report = assemble(&index, &download, &mut seed, &mut pack, &mut out)
            .map_err(|e| image_err(ImageError::Chunked(e)))?;
        out.sync().map_err(write_err)?;
        // For the next update from this slot (valid only while the state file's record of the
        // target has the same image hash, which it gets at activation).
        let kept_path = agent.kept_index_path(self.slots.target, &image.target_name);
        agent.ensure_state_dir();
        crate::io::replace_atomic(storage.as_ref(), &kept_path, bytes)
            .map_err(|e| InstallError::write(&kept_path, e))?;
        let stats = &mut self.chunked;
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
}
