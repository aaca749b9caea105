//! The simulated disk: an in-memory page cache whose unsynced state a power cut may lose
//! (feature `sim`), with injectable media faults (unreadable sectors, damaged synced sectors).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{FileInfo, Storage};

/// Sector size of the simulated media: the unit of tears, garbage and read errors.
pub const SECTOR: u64 = 512;

/// What survives a power cut of a [`SimStorage`].
///
/// The first four modes are deterministic; the seeded ones draw their choices from a
/// `StdRng` seeded with `seed`, so a failing `(operation, cut point, mode)` reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Everything not yet synced is lost: unsynced data and unsynced directory changes.
    LoseUnsynced,
    /// Everything written reached the disk even without sync.
    KeepUnsynced,
    /// Directory changes (creations, renames) survived but unsynced data did not: the
    /// classic "renamed file is empty/old after a crash" of filesystems without data
    /// ordering.
    KeepNamesLoseData,
    /// All unsynced writes reached the disk except the last one, which is torn: only its
    /// first half (whole 512-byte sectors where possible) was written. Directory changes
    /// survive.
    TornLastWrite,
    /// Per file, an arbitrary subset of the writes (and truncations) since its last fsync
    /// reached the disk, applied in an arbitrary order; of the directory operations
    /// (creations, renames, removals) since the last fsync of their directory an arbitrary
    /// subset survived, each one whole (per-entry name loss).
    Reorder {
        /// Seed of the choices.
        seed: u64,
    },
    /// Every unsynced write reached the disk only in part: each keeps an arbitrary subset of
    /// its 512-byte sectors (not only a prefix); of the sectors the last write did not keep,
    /// an arbitrary subset holds garbage (random bytes: sectors in flight at the cut).
    /// Directory changes survive.
    Torn {
        /// Seed of the choices.
        seed: u64,
    },
    /// Everything unsynced reached the disk except one sector of the last write, which holds
    /// garbage and reads fail with EIO until that sector is written again (a flash page or
    /// disk sector interrupted while being programmed). Directory changes survive.
    ReadError {
        /// Seed of the choices.
        seed: u64,
    },
}

impl CutMode {
    /// The deterministic modes, for exhaustive tests.
    pub const ALL: [CutMode; 4] = [
        CutMode::LoseUnsynced,
        CutMode::KeepUnsynced,
        CutMode::KeepNamesLoseData,
        CutMode::TornLastWrite,
    ];

    /// The seeded modes for one seed: [`CutMode::Reorder`], [`CutMode::Torn`],
    /// [`CutMode::ReadError`].
    pub fn seeded(seed: u64) -> [CutMode; 3] {
        [
            CutMode::Reorder { seed },
            CutMode::Torn { seed },
            CutMode::ReadError { seed },
        ]
    }

    /// The deterministic modes followed by the seeded modes of every seed in `seeds`.
    pub fn all_with_seeds(seeds: &[u64]) -> Vec<CutMode> {
        let mut modes = Self::ALL.to_vec();
        for &seed in seeds {
            modes.extend(Self::seeded(seed));
        }
        modes
    }

    /// The seed of a seeded mode.
    pub fn seed(&self) -> Option<u64> {
        match *self {
            CutMode::Reorder { seed } | CutMode::Torn { seed } | CutMode::ReadError { seed } => {
                Some(seed)
            }
            _ => None,
        }
    }
}

/// A directory operation not yet made durable by a directory fsync.
#[derive(Debug, Clone)]
enum NameOp {
    Create {
        path: PathBuf,
        id: usize,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        id: usize,
    },
    Remove {
        path: PathBuf,
    },
}

impl NameOp {
    fn apply(&self, names: &mut BTreeMap<PathBuf, usize>) {
        match self {
            NameOp::Create { path, id } => {
                names.insert(path.clone(), *id);
            }
            NameOp::Rename { from, to, id } => {
                names.remove(from);
                names.insert(to.clone(), *id);
            }
            NameOp::Remove { path } => {
                names.remove(path);
            }
        }
    }

    /// True when a fsync of `dir` makes this operation durable (all its entries are in `dir`).
    fn within(&self, dir: &Path) -> bool {
        let in_dir = |p: &Path| p.parent().unwrap_or(Path::new("")) == dir;
        match self {
            NameOp::Create { path, .. } | NameOp::Remove { path } => in_dir(path),
            NameOp::Rename { from, to, .. } => in_dir(from) && in_dir(to),
        }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Truncate,
    Write {
        seq: u64,
        offset: u64,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone, Default)]
struct SimInode {
    durable: Vec<u8>,
    pending: Vec<Pending>,
    /// Devices have a fixed size and cannot be truncated.
    device: bool,
    /// Sectors whose reads fail with EIO until they are written again.
    bad: BTreeSet<u64>,
}

/// Writes `data` at `offset` into `content`, growing it with zeros where needed.
fn put(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(data.len());
    if content.len() < end {
        content.resize(end, 0);
    }
    if let Some(dst) = content.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
}

fn apply(content: &mut Vec<u8>, op: &Pending, limit: Option<usize>) {
    match op {
        Pending::Truncate => content.clear(),
        Pending::Write { offset, data, .. } => {
            let n = limit.unwrap_or(data.len()).min(data.len());
            put(content, *offset, data.get(..n).unwrap_or_default());
        }
    }
}

/// The pieces of a write at `offset`, split at the media's sector boundaries:
/// (sector number, offset, bytes).
fn sector_pieces(offset: u64, data: &[u8]) -> Vec<(u64, u64, &[u8])> {
    let mut pieces = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let at = offset + pos as u64;
        let room = (SECTOR - at % SECTOR) as usize;
        let n = room.min(data.len() - pos);
        pieces.push((at / SECTOR, at, data.get(pos..pos + n).unwrap_or_default()));
        pos += n;
    }
    pieces
}

/// Sectors touched by `len` bytes at `offset`.
fn sectors_of(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / SECTOR..(offset + len - 1) / SECTOR + 1
}

impl SimInode {
    fn current(&self) -> Vec<u8> {
        let mut c = self.durable.clone();
        for op in &self.pending {
            apply(&mut c, op, None);
        }
        c
    }

    /// EIO if any of the sectors under `len` bytes at `offset` is bad.
    fn check_readable(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let range = sectors_of(offset, len);
        match self.bad.range(range).next() {
            Some(sector) => Err(io::Error::other(format!(
                "simulated media error (EIO) reading {} at sector {sector} (byte {})",
                path.display(),
                sector * SECTOR
            ))),
            None => Ok(()),
        }
    }

    /// A write of `len` bytes at `offset` remaps the bad sectors it covers whole.
    fn rewrite(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset.div_ceil(SECTOR);
        let end = (offset + len) / SECTOR;
        if first < end {
            let covered: Vec<u64> = self.bad.range(first..end).copied().collect();
            for sector in covered {
                self.bad.remove(&sector);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct SimState {
    inodes: Vec<SimInode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    /// Directory operations not yet made durable, in order.
    dir_log: Vec<NameOp>,
    ops_done: u64,
    write_seq: u64,
    cut_after: Option<u64>,
    dark: bool,
    trace: Vec<String>,
}

/// In-memory disk with a volatile page cache and power-cut injection (see module docs).
///
/// Paths are plain keys; no directories need to exist.
#[derive(Debug, Default)]
pub struct SimStorage {
    state: Mutex<SimState>,
}

fn power_off_error() -> io::Error {
    io::Error::other("simulated power cut")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn garbage(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty disk behind a shared handle.
    pub fn shared() -> Arc<SimStorage> {
        Arc::new(Self::new())
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters for a simulator; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An independent copy of this disk in its current state (durable and volatile state,
    /// bad sectors, operation count, an armed cut): sweeps prepare a device once and fork it
    /// for every cut.
    pub fn fork(&self) -> SimStorage {
        SimStorage {
            state: Mutex::new(self.lock().clone()),
        }
    }

    /// Creates (or replaces) a regular file whose content and name are already durable.
    pub fn insert_file(&self, path: impl Into<PathBuf>, data: &[u8]) {
        self.insert(path.into(), data, false);
    }

    /// Creates a fixed-size "block device" (durable), e.g. a raw env partition.
    pub fn insert_device(&self, path: impl Into<PathBuf>, data: &[u8]) {
        self.insert(path.into(), data, true);
    }

    fn insert(&self, path: PathBuf, data: &[u8], device: bool) {
        let mut s = self.lock();
        let id = s.inodes.len();
        s.inodes.push(SimInode {
            durable: data.to_vec(),
            pending: Vec::new(),
            device,
            bad: BTreeSet::new(),
        });
        s.names.insert(path.clone(), id);
        s.durable_names.insert(path, id);
    }

    /// The current (cached) content of a file, ignoring power state and bad sectors; `None`
    /// if absent.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names
            .get(path)
            .and_then(|&id| s.inodes.get(id))
            .map(SimInode::current)
    }

    /// All current file names.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// Number of mutating operations executed so far (successful ones).
    pub fn ops_done(&self) -> u64 {
        self.lock().ops_done
    }

    /// Log of the mutating operations executed so far ("write BGENV.DAT.keel-tmp", ...).
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// Lets `ops` more mutating operations succeed; the next one fails with a "simulated
    /// power cut" error, and every operation after it fails too until
    /// [`SimStorage::power_cycle`].
    pub fn arm_power_cut(&self, ops: u64) {
        let mut s = self.lock();
        s.cut_after = Some(s.ops_done.saturating_add(ops));
    }

    /// True once an armed power cut has happened.
    pub fn is_dark(&self) -> bool {
        self.lock().dark
    }

    /// Makes the sectors under `len` bytes at `offset` of `path` unreadable: reads touching
    /// them fail with EIO until a write covers them whole. `NotFound` if `path` does not exist.
    pub fn inject_read_error(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(id).ok_or_else(|| not_found(path))?;
        inode.bad.extend(sectors_of(offset, len));
        Ok(())
    }

    /// Damages already-synced data: the sectors under `len` bytes at `offset` of `path` (its
    /// durable content, within the file) get random bytes from `seed`, as a bad sector of
    /// the media that reads back wrong instead of failing. Returns the damaged byte range;
    /// `NotFound` if `path` does not exist.
    pub fn corrupt_synced(
        &self,
        path: &Path,
        offset: u64,
        len: u64,
        seed: u64,
    ) -> io::Result<std::ops::Range<u64>> {
        let mut s = self.lock();
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(id).ok_or_else(|| not_found(path))?;
        let size = inode.durable.len() as u64;
        let sectors = sectors_of(offset.min(size), len.min(size.saturating_sub(offset)));
        let range = (sectors.start * SECTOR).min(size)..(sectors.end * SECTOR).min(size);
        let mut rng = StdRng::seed_from_u64(seed);
        let len = (range.end - range.start) as usize;
        let mut bytes = garbage(&mut rng, len);
        // Never "damage" into the very same bytes.
        if let Some(first) = bytes.first_mut() {
            let old = inode
                .durable
                .get(range.start as usize)
                .copied()
                .unwrap_or(0);
            if *first == old {
                *first = !old;
            }
        }
        put(&mut inode.durable, range.start, &bytes);
        Ok(range)
    }

    /// Sectors of `path` whose reads fail (see [`SimStorage::inject_read_error`] and
    /// [`CutMode::ReadError`]).
    pub fn bad_sectors(&self, path: &Path) -> Vec<u64> {
        let s = self.lock();
        s.names
            .get(path)
            .and_then(|&id| s.inodes.get(id))
            .map(|i| i.bad.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Cuts the power now (if not already) and boots the disk again: the volatile state is
    /// resolved according to `mode` and every file becomes durable as it is afterwards.
    pub fn power_cycle(&self, mode: CutMode) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let last_seq = s
            .inodes
            .iter()
            .flat_map(|i| i.pending.iter())
            .filter_map(|p| match p {
                Pending::Write { seq, .. } => Some(*seq),
                Pending::Truncate => None,
            })
            .max();
        let mut rng = StdRng::seed_from_u64(mode.seed().unwrap_or(0));
        for inode in &mut s.inodes {
            let pending = std::mem::take(&mut inode.pending);
            match mode {
                CutMode::LoseUnsynced | CutMode::KeepNamesLoseData => {}
                CutMode::KeepUnsynced => {
                    for op in &pending {
                        apply(&mut inode.durable, op, None);
                    }
                }
                CutMode::TornLastWrite => {
                    for op in &pending {
                        let limit = match op {
                            Pending::Write { seq, data, .. } if Some(*seq) == last_seq => {
                                let half = data.len() / 2;
                                let sectors = half / 512 * 512;
                                Some(if sectors > 0 { sectors } else { half })
                            }
                            _ => None,
                        };
                        apply(&mut inode.durable, op, limit);
                    }
                }
                CutMode::Reorder { .. } => {
                    let mut kept: Vec<&Pending> =
                        pending.iter().filter(|_| rng.gen_bool(0.5)).collect();
                    kept.shuffle(&mut rng);
                    for op in kept {
                        apply(&mut inode.durable, op, None);
                    }
                }
                CutMode::Torn { .. } => {
                    for op in &pending {
                        let Pending::Write { seq, offset, data } = op else {
                            apply(&mut inode.durable, op, None);
                            continue;
                        };
                        let in_flight = Some(*seq) == last_seq;
                        for (_, at, bytes) in sector_pieces(*offset, data) {
                            if rng.gen_bool(0.5) {
                                put(&mut inode.durable, at, bytes);
                            } else if in_flight && rng.gen_bool(0.5) {
                                let noise = garbage(&mut rng, bytes.len());
                                put(&mut inode.durable, at, &noise);
                            }
                        }
                    }
                }
                CutMode::ReadError { .. } => {
                    for op in &pending {
                        apply(&mut inode.durable, op, None);
                        if let Pending::Write { seq, offset, data } = op {
                            if Some(*seq) == last_seq {
                                let pieces = sector_pieces(*offset, data);
                                if let Some(&(sector, at, bytes)) = pieces.choose(&mut rng) {
                                    let noise = garbage(&mut rng, bytes.len());
                                    put(&mut inode.durable, at, &noise);
                                    inode.bad.insert(sector);
                                }
                            }
                        }
                    }
                }
            }
        }
        let log = std::mem::take(&mut s.dir_log);
        match mode {
            CutMode::LoseUnsynced => s.names = s.durable_names.clone(),
            CutMode::Reorder { .. } => {
                let mut names = s.durable_names.clone();
                for op in log.iter().filter(|_| rng.gen_bool(0.5)) {
                    op.apply(&mut names);
                }
                s.names = names.clone();
                s.durable_names = names;
            }
            _ => s.durable_names = s.names.clone(),
        }
        s.dark = false;
        s.cut_after = None;
    }

    /// Counts one mutating operation; fails if the power is (or now goes) off.
    fn begin_op(s: &mut SimState, what: String) -> io::Result<()> {
        if s.dark {
            return Err(power_off_error());
        }
        if let Some(limit) = s.cut_after {
            if s.ops_done >= limit {
                s.dark = true;
                return Err(power_off_error());
            }
        }
        s.ops_done += 1;
        s.trace.push(what);
        Ok(())
    }
}

impl Storage for SimStorage {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        if s.dark {
            return Err(power_off_error());
        }
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let Some(inode) = s.inodes.get(id) else {
            return Ok(Vec::new());
        };
        let content = inode.current();
        inode.check_readable(path, 0, content.len() as u64)?;
        Ok(content)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.lock();
        if s.dark {
            return Err(power_off_error());
        }
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get(id).ok_or_else(|| not_found(path))?;
        let all = inode.current();
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| all.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        inode.check_readable(path, offset, len as u64)?;
        Ok(bytes)
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(&mut s, format!("write_file {}", path.display()))?;
        s.write_seq += 1;
        let seq = s.write_seq;
        let write = Pending::Write {
            seq,
            offset: 0,
            data: data.to_vec(),
        };
        match s.names.get(path).copied() {
            Some(id) => {
                let inode = s.inodes.get_mut(id).ok_or_else(|| not_found(path))?;
                if inode.device {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "cannot truncate a device",
                    ));
                }
                inode.pending.push(Pending::Truncate);
                inode.pending.push(write);
                inode.bad.clear();
            }
            None => {
                let id = s.inodes.len();
                s.inodes.push(SimInode {
                    durable: Vec::new(),
                    pending: vec![write],
                    device: false,
                    bad: BTreeSet::new(),
                });
                s.names.insert(path.to_path_buf(), id);
                s.dir_log.push(NameOp::Create {
                    path: path.to_path_buf(),
                    id,
                });
            }
        }
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(
            &mut s,
            format!("write_at {} @{offset}+{}", path.display(), data.len()),
        )?;
        s.write_seq += 1;
        let seq = s.write_seq;
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(id).ok_or_else(|| not_found(path))?;
        if inode.device {
            let end = offset.checked_add(data.len() as u64);
            let fits = matches!(end, Some(end) if end <= inode.current().len() as u64);
            if !fits {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write past the end of the device",
                ));
            }
        }
        inode.rewrite(offset, data.len() as u64);
        inode.pending.push(Pending::Write {
            seq,
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(&mut s, format!("fsync {}", path.display()))?;
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(id).ok_or_else(|| not_found(path))?;
        inode.durable = inode.current();
        inode.pending.clear();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(
            &mut s,
            format!("rename {} -> {}", from.display(), to.display()),
        )?;
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        s.dir_log.push(NameOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            id,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(&mut s, format!("fsync dir {}", dir.display()))?;
        let in_dir = |p: &Path| p.parent().unwrap_or(Path::new("")) == dir;
        let keys: BTreeSet<PathBuf> = s
            .names
            .keys()
            .chain(s.durable_names.keys())
            .filter(|p| in_dir(p))
            .cloned()
            .collect();
        for key in keys {
            match s.names.get(&key).copied() {
                Some(id) => {
                    s.durable_names.insert(key, id);
                }
                None => {
                    s.durable_names.remove(&key);
                }
            }
        }
        s.dir_log.retain(|op| !op.within(dir));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(&mut s, format!("remove {}", path.display()))?;
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        s.dir_log.push(NameOp::Remove {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        let s = self.lock();
        if s.dark {
            return Err(power_off_error());
        }
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get(id).ok_or_else(|| not_found(path))?;
        Ok(FileInfo {
            len: inode.current().len() as u64,
            regular: !inode.device,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::replace_file;

    #[test]
    fn unsynced_write_lost_or_kept() {
        let sim = SimStorage::new();
        sim.insert_file("/a", b"old");
        sim.write_file(Path::new("/a"), b"new").unwrap();
        sim.power_cycle(CutMode::LoseUnsynced);
        assert_eq!(sim.read(Path::new("/a")).unwrap(), b"old");
        sim.write_file(Path::new("/a"), b"new").unwrap();
        sim.power_cycle(CutMode::KeepUnsynced);
        assert_eq!(sim.read(Path::new("/a")).unwrap(), b"new");
    }

    #[test]
    fn armed_cut_stops_everything() {
        let sim = SimStorage::new();
        sim.insert_file("/d/f", b"0123");
        sim.arm_power_cut(1);
        sim.write_at(Path::new("/d/f"), 0, b"ab").unwrap();
        assert!(sim.sync(Path::new("/d/f")).is_err());
        assert!(sim.read(Path::new("/d/f")).is_err());
        sim.power_cycle(CutMode::TornLastWrite);
        assert_eq!(sim.read(Path::new("/d/f")).unwrap(), b"a123");
    }

    #[test]
    fn rename_needs_dir_sync() {
        let sim = SimStorage::new();
        sim.insert_file("/d/f", b"old");
        replace_file(&sim, Path::new("/d/f"), b"new").unwrap();
        sim.power_cycle(CutMode::LoseUnsynced);
        assert_eq!(sim.read(Path::new("/d/f")).unwrap(), b"new");
        assert!(sim.read(Path::new("/d/f.keel-tmp")).is_err());
    }
}
