//! The simulated disk: an in-memory page cache whose unsynced state a power cut may lose
//! (feature `sim`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileInfo, Storage};

/// What survives a power cut of a [`SimStorage`].
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
}

impl CutMode {
    /// All modes, for exhaustive tests.
    pub const ALL: [CutMode; 4] = [
        CutMode::LoseUnsynced,
        CutMode::KeepUnsynced,
        CutMode::KeepNamesLoseData,
        CutMode::TornLastWrite,
    ];
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
}

fn apply(content: &mut Vec<u8>, op: &Pending, limit: Option<usize>) {
    match op {
        Pending::Truncate => content.clear(),
        Pending::Write { offset, data, .. } => {
            let n = limit.unwrap_or(data.len()).min(data.len());
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(n);
            if content.len() < end {
                content.resize(end, 0);
            }
            if let (Some(dst), Some(src)) = (content.get_mut(start..end), data.get(..n)) {
                dst.copy_from_slice(src);
            }
        }
    }
}

impl SimInode {
    fn current(&self) -> Vec<u8> {
        let mut c = self.durable.clone();
        for op in &self.pending {
            apply(&mut c, op, None);
        }
        c
    }
}

#[derive(Debug, Default)]
struct SimState {
    inodes: Vec<SimInode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
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
        });
        s.names.insert(path.clone(), id);
        s.durable_names.insert(path, id);
    }

    /// The current (cached) content of a file, ignoring power state; `None` if absent.
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

    /// Cuts the power now (if not already) and boots the disk again: the volatile state is
    /// resolved according to `mode` and every file becomes durable as it is afterwards.
    pub fn power_cycle(&self, mode: CutMode) {
        let mut s = self.lock();
        let last_seq = s
            .inodes
            .iter()
            .flat_map(|i| i.pending.iter())
            .filter_map(|p| match p {
                Pending::Write { seq, .. } => Some(*seq),
                Pending::Truncate => None,
            })
            .max();
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
            }
        }
        match mode {
            CutMode::LoseUnsynced => s.names = s.durable_names.clone(),
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
        Ok(s.inodes.get(id).map(SimInode::current).unwrap_or_default())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let all = self.read(path)?;
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        start
            .checked_add(len)
            .and_then(|end| all.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
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
            }
            None => {
                let id = s.inodes.len();
                s.inodes.push(SimInode {
                    durable: Vec::new(),
                    pending: vec![write],
                    device: false,
                });
                s.names.insert(path.to_path_buf(), id);
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
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        Self::begin_op(&mut s, format!("remove {}", path.display()))?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
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
