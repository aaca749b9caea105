//! The agent's view of persistent storage.
//!
//! Every byte the agent makes durable goes through `keel_bootenv::storage::Storage` (the same
//! layer the bootloader environments use), so the simulator can count write and fsync
//! boundaries across slots, environments and the state file, and cut the power at any of them.
//! On the real file system, slots are written through one open file descriptor instead of
//! the per-call `write_at` of the generic path.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use keel_bootenv::storage::{FsStorage, SharedStorage, Storage};

/// Where the agent runs. Decides what only the real operating system has: plain file
/// descriptors for slots, the `flock` agent lock, and a state directory to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The device's own file systems and block devices (`keel-agent`).
    Os,
    /// Everything through the [`Storage`] layer, which may be simulated (keel-sim counts and
    /// cuts every write there); one agent at a time, no directories.
    Storage,
}

impl Environment {
    /// Slots are written through one open file descriptor rather than `Storage::write_at`.
    pub fn direct_slot_io(self) -> bool {
        self == Environment::Os
    }

    /// Other agent processes may exist, so installs and confirms take the agent lock.
    pub fn has_other_processes(self) -> bool {
        self == Environment::Os
    }

    /// The state directory may be missing and is ours to create (the storage layer has none).
    pub fn creates_state_dir(self) -> bool {
        self == Environment::Os
    }
}

/// A slot opened for sequential writing from offset 0.
pub struct SlotWriter {
    inner: Inner,
    path: PathBuf,
    written: u64,
    /// Size of the slot (block device size or current file length); `None` for growable files.
    capacity: Option<u64>,
}

enum Inner {
    Os(File),
    Generic(SharedStorage),
}

impl SlotWriter {
    /// Open an existing slot (block device or regular file), through a plain file descriptor
    /// on the real system, else every write goes through `storage.write_at`.
    pub fn open(storage: &SharedStorage, env: Environment, path: &Path) -> io::Result<SlotWriter> {
        let info = storage.metadata(path)?;
        // Regular files may grow (file-backed slots); block devices have a hard size.
        let capacity = if info.regular { None } else { Some(info.len) };
        let inner = if env.direct_slot_io() {
            // No truncate and no create: a slot is a pre-existing partition or file.
            Inner::Os(OpenOptions::new().write(true).open(path)?)
        } else {
            Inner::Generic(storage.clone())
        };
        Ok(SlotWriter {
            inner,
            path: path.to_path_buf(),
            written: 0,
            capacity,
        })
    }

    /// The slot being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far (the offset of the next write).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `bytes` at the current offset. Fails with `StorageFull`, writing nothing, when they
    /// would run past the end of a block device.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self
            .written
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| io::Error::other("slot offset overflow"))?;
        if let Some(capacity) = self.capacity {
            if end > capacity {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "image does not fit into {} ({capacity} bytes)",
                        self.path.display()
                    ),
                ));
            }
        }
        match &mut self.inner {
            Inner::Os(file) => file.write_all(bytes)?,
            Inner::Generic(storage) => storage.write_at(&self.path, self.written, bytes)?,
        }
        self.written = end;
        Ok(())
    }

    /// Make everything written so far durable (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Os(file) => file.sync_all(),
            Inner::Generic(storage) => storage.sync(&self.path),
        }
    }
}

/// Replace `path` atomically and durably: temp file, fsync, rename, directory fsync.
pub fn replace_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path);
    storage.write_file(&tmp, bytes)?;
    storage.sync(&tmp)?;
    storage.rename(&tmp, path)?;
    storage.sync_dir(&parent_dir(path))
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary name used by [`replace_atomic`] (same directory, so rename is atomic).
pub fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    parent_dir(path).join(name)
}

/// A [`SlotWriter`] as `io::Write` that hands the slot fixed-size writes (the last one may be
/// shorter), whatever sizes the producer writes in. Call [`ChunkedSlot::finish`] at the end.
pub struct ChunkedSlot<'a> {
    slot: &'a mut SlotWriter,
    buf: Vec<u8>,
    chunk: usize,
}

impl<'a> ChunkedSlot<'a> {
    /// Buffers writes to `slot` into writes of `chunk` bytes (at least 1).
    pub fn new(slot: &'a mut SlotWriter, chunk: usize) -> ChunkedSlot<'a> {
        ChunkedSlot {
            slot,
            buf: Vec::with_capacity(chunk),
            chunk: chunk.max(1),
        }
    }

    /// Write what is buffered.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.slot.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for ChunkedSlot<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.buf.len() == self.chunk {
            self.slot.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a slot (the delta seed) through the storage layer.
pub struct SlotReader {
    storage: SharedStorage,
    path: PathBuf,
}

impl SlotReader {
    /// A reader of the slot at `path` (nothing is opened until the first read).
    pub fn new(storage: SharedStorage, path: &Path) -> SlotReader {
        SlotReader {
            storage,
            path: path.to_path_buf(),
        }
    }
}

impl keel_delta::SeedRead for SlotReader {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.storage.read_at(&self.path, offset, buf.len())?;
        if data.len() != buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&data);
        Ok(())
    }
}
