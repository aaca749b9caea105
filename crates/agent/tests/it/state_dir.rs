//! The state directory the agent creates is durable: every directory it creates is followed
//! by an fsync of its parent, so `state.json` cannot vanish with its directory entry after a
//! power cut (the state file's own rename is followed by an fsync of the state directory).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keel_agent::config::Config;
use keel_agent::state::AgentState;
use keel_agent::{Agent, Environment};
use keel_bootenv::storage::{FileInfo, FsStorage, Storage};

/// The real filesystem, recording every directory fsync.
#[derive(Debug, Default)]
struct Recording {
    synced_dirs: Mutex<Vec<PathBuf>>,
}

impl Storage for Recording {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        FsStorage.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        FsStorage.read_at(path, offset, len)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        FsStorage.write_file(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        FsStorage.write_at(path, offset, data)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        FsStorage.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.synced_dirs.lock().unwrap().push(dir.to_path_buf());
        FsStorage.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        FsStorage.metadata(path)
    }
}

#[test]
fn created_state_directories_are_fsynced_in_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("var/lib/keel");
    let config = Config::parse(&format!(
        r#"
state_dir = "{}"
trusted_certs = "/nonexistent.pem"

[bootloader]
type = "grub"
grubenv = "{}/grubenv"

[slots.A]
targets = {{ rootfs = "/dev/null-a" }}

[slots.B]
targets = {{ rootfs = "/dev/null-b" }}
"#,
        state_dir.display(),
        dir.path().display()
    ))
    .unwrap();
    let storage = Arc::new(Recording::default());
    let agent = Agent::new(config, storage.clone(), Environment::Os).unwrap();
    agent.store_state(&AgentState::default()).unwrap();
    assert!(state_dir.join("state.json").is_file());
    let synced = storage.synced_dirs.lock().unwrap().clone();
    // var, var/lib and var/lib/keel were created: their parents are fsynced, outermost first,
    // then the state directory itself after the rename of state.json.
    let expected: Vec<PathBuf> = vec![
        dir.path().to_path_buf(),
        dir.path().join("var"),
        dir.path().join("var/lib"),
        state_dir.clone(),
    ];
    assert_eq!(synced, expected);
    // Existing directory: nothing to create, only the state file's own directory fsync.
    storage.synced_dirs.lock().unwrap().clear();
    agent.store_state(&AgentState::default()).unwrap();
    assert_eq!(*storage.synced_dirs.lock().unwrap(), vec![state_dir]);
}
