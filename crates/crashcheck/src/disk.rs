//! A replayed disk: the base image (read on demand) plus an in-memory overlay of the sectors
//! written since, with an undo stack for speculative states and incremental trackers:
//!
//! - [`SlotTracker`]: per root slot and per expected image, how many sectors differ from that
//!   image (so "the slot holds exactly image X" is an O(1) question per state);
//! - [`FileMirror`]: a small partition (a BOOT partition) kept byte-exact in a file (on tmpfs)
//!   for the external tools, with a content key that is equal for equal content whatever the
//!   history (XOR of per-sector hashes), so results can be cached per distinct partition image.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Disk sector size the replay works in.
pub const SECTOR: usize = 512;

/// A range of disk sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Name used in messages (`BOOT0`, `rootB`, ...).
    pub name: String,
    /// First sector.
    pub start: u64,
    /// Number of sectors.
    pub sectors: u64,
}

impl Region {
    /// A region from byte offset and length (both multiples of [`SECTOR`]).
    pub fn from_bytes(name: &str, offset: u64, len: u64) -> Region {
        Region {
            name: name.to_string(),
            start: offset / SECTOR as u64,
            sectors: len / SECTOR as u64,
        }
    }

    /// Whether `sector` lies inside.
    pub fn contains(&self, sector: u64) -> bool {
        sector >= self.start && sector - self.start < self.sectors
    }
}

/// Counts, per expected image, the sectors of a slot that differ from it.
#[derive(Debug)]
pub struct SlotTracker {
    /// The slot's partition (only its first `image.len()` bytes are compared).
    pub region: Region,
    images: Vec<(String, Vec<u8>)>,
    differs: Vec<Vec<bool>>,
    counts: Vec<u64>,
}

impl SlotTracker {
    /// The names of the expected images and how many sectors differ from each.
    pub fn mismatches(&self) -> impl Iterator<Item = (&str, u64)> {
        self.images
            .iter()
            .zip(&self.counts)
            .map(|((name, _), c)| (name.as_str(), *c))
    }

    /// The name of the image the slot holds exactly, if any.
    pub fn matching(&self) -> Option<&str> {
        self.mismatches().find(|(_, c)| *c == 0).map(|(n, _)| n)
    }

    fn update(&mut self, sector: u64, data: &[u8]) {
        if !self.region.contains(sector) {
            return;
        }
        let idx = (sector - self.region.start) as usize;
        for (j, (_, image)) in self.images.iter().enumerate() {
            let Some(expected) = image.get(idx * SECTOR..(idx + 1) * SECTOR) else {
                continue;
            };
            let differs = expected != data;
            if differs != self.differs[j][idx] {
                self.differs[j][idx] = differs;
                if differs {
                    self.counts[j] += 1;
                } else {
                    self.counts[j] -= 1;
                }
            }
        }
    }
}

/// A partition mirrored into a file, with a history-independent content key.
#[derive(Debug)]
pub struct FileMirror {
    /// The mirrored partition.
    pub region: Region,
    file: File,
    key: u128,
}

impl FileMirror {
    /// Content key: 0 for the base content, equal for equal content.
    pub fn key(&self) -> u128 {
        self.key
    }
}

fn sector_hash(sector: u64, data: &[u8]) -> u128 {
    let mut h = Sha256::new();
    h.update(sector.to_le_bytes());
    h.update(data);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    u128::from_le_bytes(k)
}

struct Undo {
    sector: u64,
    old: Vec<u8>,
    was_written: bool,
}

/// Base image + overlay + trackers.
pub struct Disk {
    base: File,
    size_sectors: u64,
    overlay: HashMap<u64, Vec<u8>>,
    /// Root slot trackers, in the order added.
    pub slots: Vec<SlotTracker>,
    /// Mirrored partitions, in the order added.
    pub mirrors: Vec<FileMirror>,
    undo: Vec<Undo>,
    speculative: usize,
}

impl Disk {
    /// Opens the base image (never written).
    pub fn open(base: &Path) -> Result<Disk> {
        let file = File::open(base)
            .with_context(|| format!("cannot open the base image {}", base.display()))?;
        let len = file.metadata()?.len();
        Ok(Disk {
            base: file,
            size_sectors: len / SECTOR as u64,
            overlay: HashMap::new(),
            slots: Vec::new(),
            mirrors: Vec::new(),
            undo: Vec::new(),
            speculative: 0,
        })
    }

    /// Size of the disk in sectors.
    pub fn size_sectors(&self) -> u64 {
        self.size_sectors
    }

    /// Tracks `region` against the named images (each at most the region's size).
    pub fn track_slot(&mut self, region: Region, images: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut tracker = SlotTracker {
            differs: images
                .iter()
                .map(|(_, i)| vec![false; i.len() / SECTOR])
                .collect(),
            counts: vec![0; images.len()],
            images,
            region,
        };
        let n = tracker.differs.iter().map(Vec::len).max().unwrap_or(0) as u64;
        if n > tracker.region.sectors {
            bail!(
                "an expected image of {} is larger than the partition",
                tracker.region.name
            );
        }
        let mut buf = vec![0u8; SECTOR];
        for i in 0..n {
            let s = tracker.region.start + i;
            self.read_sector(s, &mut buf)?;
            // Initialise as "equal", then let update count the differences.
            tracker.update(s, &buf);
        }
        self.slots.push(tracker);
        Ok(())
    }

    /// Mirrors `region` into `path` (created or replaced) from now on.
    pub fn mirror(&mut self, region: Region, path: &Path) -> Result<()> {
        let mut file = File::create(path)
            .with_context(|| format!("cannot create the mirror {}", path.display()))?;
        self.copy_region(&region, &mut file)?;
        self.mirrors.push(FileMirror {
            region,
            file,
            key: 0,
        });
        Ok(())
    }

    /// Reads one sector of the current state.
    pub fn read_sector(&self, sector: u64, out: &mut [u8]) -> Result<()> {
        if let Some(data) = self.overlay.get(&sector) {
            out.copy_from_slice(data);
            return Ok(());
        }
        self.base
            .read_exact_at(out, sector * SECTOR as u64)
            .with_context(|| format!("cannot read sector {sector} of the base image"))
    }

    fn set_sector(&mut self, sector: u64, data: &[u8], record: bool) -> Result<()> {
        let mut old = vec![0u8; SECTOR];
        self.read_sector(sector, &mut old)?;
        if old == data {
            return Ok(());
        }
        if record {
            self.undo.push(Undo {
                sector,
                old: old.clone(),
                was_written: self.overlay.contains_key(&sector),
            });
        }
        for slot in &mut self.slots {
            slot.update(sector, data);
        }
        for m in &mut self.mirrors {
            if m.region.contains(sector) {
                m.file
                    .write_all_at(data, (sector - m.region.start) * SECTOR as u64)
                    .context("cannot write a mirrored partition")?;
                m.key ^= sector_hash(sector, &old) ^ sector_hash(sector, data);
            }
        }
        self.overlay.insert(sector, data.to_vec());
        Ok(())
    }

    /// Writes `data` (whole sectors) at `sector` (undoable while speculative).
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<()> {
        if !data.len().is_multiple_of(SECTOR) {
            bail!("a write of {} bytes is not whole sectors", data.len());
        }
        let n = (data.len() / SECTOR) as u64;
        if sector.checked_add(n).is_none_or(|e| e > self.size_sectors) {
            bail!(
                "a write of {n} sectors at sector {sector} runs past the end of the disk ({} sectors)",
                self.size_sectors
            );
        }
        let record = self.speculative > 0;
        for (i, chunk) in data.chunks_exact(SECTOR).enumerate() {
            self.set_sector(sector + i as u64, chunk, record)?;
        }
        Ok(())
    }

    /// Starts a speculative state: writes until [`Disk::rollback`] are undone by it.
    pub fn begin(&mut self) -> usize {
        self.speculative += 1;
        self.undo.len()
    }

    /// Undoes every write since the matching [`Disk::begin`].
    pub fn rollback(&mut self, mark: usize) -> Result<()> {
        while self.undo.len() > mark {
            let Some(u) = self.undo.pop() else { break };
            self.set_sector(u.sector, &u.old, false)?;
            if !u.was_written {
                self.overlay.remove(&u.sector);
            }
        }
        self.speculative = self.speculative.saturating_sub(1);
        Ok(())
    }

    /// Writes the current content of `region` to `out`.
    pub fn copy_region(&self, region: &Region, out: &mut impl Write) -> Result<()> {
        let mut keys: Vec<u64> = self
            .overlay
            .keys()
            .copied()
            .filter(|s| region.contains(*s))
            .collect();
        keys.sort_unstable();
        let chunk_sectors = 2048u64;
        let mut buf = vec![0u8; chunk_sectors as usize * SECTOR];
        let mut k = 0;
        let mut s = region.start;
        let end = region.start + region.sectors;
        while s < end {
            let n = chunk_sectors.min(end - s);
            let part = &mut buf[..n as usize * SECTOR];
            self.base
                .read_exact_at(part, s * SECTOR as u64)
                .with_context(|| format!("cannot read {} from the base image", region.name))?;
            while k < keys.len() && keys[k] < s + n {
                let at = (keys[k] - s) as usize * SECTOR;
                if let Some(data) = self.overlay.get(&keys[k]) {
                    part[at..at + SECTOR].copy_from_slice(data);
                }
                k += 1;
            }
            out.write_all(part)?;
            s += n;
        }
        Ok(())
    }

    /// Writes the whole current disk to `path`: a sparse copy of the base (`cp
    /// --sparse=always`) with the overlay written over it.
    pub fn export(&self, base_path: &Path, path: &Path) -> Result<()> {
        let status = std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(base_path)
            .arg(path)
            .status()
            .context("cannot run cp")?;
        if !status.success() {
            bail!("cp of {} to {} failed", base_path.display(), path.display());
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        for (sector, data) in &self.overlay {
            file.write_all_at(data, sector * SECTOR as u64)?;
        }
        Ok(())
    }
}
