//! Storage abstraction: every byte keel reads or writes for a bootloader environment goes
//! through [`Storage`], so a simulator can cut the power between any two operations.
//!
//! * [`FsStorage`] is the real thing (std::fs, `fsync`, `rename`).
//! * `SimStorage` (feature `sim`, module [`sim`] — the simulator and the tests enable it; the
//!   agent's binary does not carry it) is an in-memory disk with a page cache: writes stay
//!   volatile until [`Storage::sync`], renames and creations stay volatile until
//!   [`Storage::sync_dir`]. `SimStorage::arm_power_cut` makes the n+1-th mutating operation fail
//!   and the disk go dark; `SimStorage::power_cycle` then decides what of the volatile state
//!   survived (`CutMode`: all, none, names only, a torn last write, or — seeded — an arbitrary
//!   subset of writes in an arbitrary order with per-entry name loss, arbitrary torn sectors
//!   with garbage, an unreadable sector). `SimStorage::inject_read_error` and
//!   `SimStorage::corrupt_synced` add media faults (EIO on read, damaged synced sectors).
//!
//! Every mutating call (`write_file`, `write_at`, `sync`, `rename`, `sync_dir`, `remove`)
//! is one "boundary" where power may be cut.

use std::fmt::Debug;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{EnvError, Result};

/// What [`Storage::metadata`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes (for block devices: the device size).
    pub len: u64,
    /// True for a regular file, false for a block/character device.
    pub regular: bool,
}

/// The operations environment code needs from a disk. Implementations must be usable from
/// several threads (`&self` everywhere).
pub trait Storage: Debug + Send + Sync {
    /// Reads a whole file. `NotFound` if it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads exactly `len` bytes at `offset` (`UnexpectedEof` if the file is shorter).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Creates or truncates `path` and writes `data` (volatile until [`Storage::sync`], the
    /// name volatile until [`Storage::sync_dir`]).
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Overwrites `data.len()` bytes at `offset` of an existing file or device.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the file's content durable (fsync).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` by `from` (volatile until [`Storage::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file (volatile until [`Storage::sync_dir`]).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Size and kind of a file or device.
    fn metadata(&self, path: &Path) -> io::Result<FileInfo>;
    /// Drops the cached pages of `path` (after [`Storage::sync`]), so that the next read comes
    /// from the device rather than from memory: the read-back of `verify_after_write`.
    /// Storages without a page cache of their own keep the default, which does nothing.
    fn drop_cache(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// Shared handle to a storage backend, as held by the environment types.
pub type SharedStorage = Arc<dyn Storage>;

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl FsStorage {
    /// A shared handle to the real filesystem.
    pub fn shared() -> SharedStorage {
        Arc::new(FsStorage)
    }
}

impl Storage for FsStorage {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(data)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        // A read-write open is needed on some systems for fsync to reach the device.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let handle = std::fs::File::open(dir)?;
        match handle.sync_all() {
            // Some filesystems (vfat before Linux 2.6.x's dir fsync, some FUSE and network
            // filesystems) answer EINVAL to fsync on a directory. Treating that as success
            // would claim a rename is durable when nothing was flushed, so fall back to
            // syncfs(2) on the filesystem holding the directory: it writes back every dirty
            // inode and the directory blocks with them (Linux fs/sync.c, sync_filesystem).
            // Only if that fails too is the error reported, naming the directory.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                rustix::fs::syncfs(&handle).map_err(|errno| {
                    io::Error::new(
                        io::Error::from(errno).kind(),
                        format!(
                            "{}: the filesystem refuses fsync on directories (EINVAL) and syncfs failed too ({errno}); mount it with -o dirsync",
                            dir.display()
                        ),
                    )
                })
            }
            other => other,
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn drop_cache(&self, path: &Path) -> io::Result<()> {
        // POSIX_FADV_DONTNEED drops the clean cached pages of the file or block device
        // (the caller fsynced it first, so every page is clean), through rustix: no unsafe.
        let file = std::fs::File::open(path)?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(io::Error::from)
    }

    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        if meta.is_file() {
            return Ok(FileInfo {
                len: meta.len(),
                regular: true,
            });
        }
        // Block devices report length 0 in metadata; seeking to the end gives their size.
        let mut file = std::fs::File::open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        Ok(FileInfo {
            len,
            regular: false,
        })
    }
}

/// Replaces a regular file atomically and durably: write `<path>.keel-tmp`, fsync it, rename
/// it over `path`, fsync the directory. A power cut at any point leaves either the old or the
/// new content at `path` (on filesystems with atomic rename).
pub fn replace_file(storage: &dyn Storage, path: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    storage
        .write_file(&tmp, data)
        .map_err(|e| EnvError::io("write", &tmp, e))?;
    storage
        .sync(&tmp)
        .map_err(|e| EnvError::io("fsync", &tmp, e))?;
    storage
        .rename(&tmp, path)
        .map_err(|e| EnvError::io("rename", &tmp, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    storage
        .sync_dir(dir)
        .map_err(|e| EnvError::io("fsync directory", dir, e))?;
    Ok(())
}

/// Overwrites `data` at `offset` of an existing file or device and fsyncs it.
pub fn write_in_place(storage: &dyn Storage, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    storage
        .write_at(path, offset, data)
        .map_err(|e| EnvError::io("write", path, e))?;
    storage
        .sync(path)
        .map_err(|e| EnvError::io("fsync", path, e))?;
    Ok(())
}

/// The temporary name [`replace_file`] uses next to `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".keel-tmp");
    path.with_file_name(name)
}

#[cfg(feature = "sim")]
mod sim;
#[cfg(feature = "sim")]
pub use sim::{CutMode, SimStorage, SECTOR};

#[cfg(test)]
mod tests {
    use super::*;

    /// procfs answers EINVAL to fsync on a directory, as vfat did on old kernels: `sync_dir`
    /// must not take that as durable but fall back to syncfs(2), which procfs accepts.
    #[test]
    fn sync_dir_falls_back_to_syncfs_on_einval() {
        let dir = Path::new("/proc/self");
        let Ok(handle) = std::fs::File::open(dir) else {
            return; // no procfs here
        };
        let plain = handle.sync_all().unwrap_err();
        assert_eq!(plain.kind(), io::ErrorKind::InvalidInput, "{plain}");
        FsStorage.sync_dir(dir).unwrap();
        // A regular directory takes the ordinary path.
        let tmp = std::env::temp_dir();
        FsStorage.sync_dir(&tmp).unwrap();
        // Errors other than EINVAL are reported.
        let missing = FsStorage
            .sync_dir(Path::new("/nonexistent-keel-dir"))
            .unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    /// `drop_cache` works on a fsynced regular file and leaves its content alone.
    #[test]
    fn drop_cache_keeps_the_content() {
        let dir = std::env::temp_dir().join(format!("keel-drop-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("slot");
        FsStorage.write_file(&file, b"written").unwrap();
        FsStorage.sync(&file).unwrap();
        FsStorage.drop_cache(&file).unwrap();
        assert_eq!(FsStorage.read(&file).unwrap(), b"written");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
