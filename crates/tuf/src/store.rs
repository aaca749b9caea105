//! The local metadata store: one file per role (`root.json`, `timestamp.json`, `<role>.json` with the role
//! name percent-encoded), holding exactly the bytes that were verified, written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A directory of trusted metadata.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    dir: PathBuf,
}

impl MetadataStore {
    /// Uses `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| store_error(&dir, source))?;
        Ok(MetadataStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `role`.
    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{}.json", percent_encode(role)))
    }

    /// The stored bytes of `role`, if any (an unreadable file counts as absent: it must not brick updates).
    pub fn read(&self, role: &str) -> Option<Vec<u8>> {
        fs::read(self.path(role)).ok()
    }

    /// Stores `data` for `role` atomically.
    pub fn write(&self, role: &str, data: &[u8]) -> Result<(), Error> {
        let path = self.path(role);
        write_atomically(&path, data).map_err(|source| store_error(&path, source))
    }

    /// Removes the stored copy of `role`, if any.
    pub fn remove(&self, role: &str) -> Result<(), Error> {
        let path = self.path(role);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(store_error(&path, source)),
        }
    }
}

fn store_error(path: &Path, source: std::io::Error) -> Error {
    Error::Store {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `data` to a temporary file next to `path`, fsyncs it, renames it over `path` and fsyncs the directory,
/// so after a power cut the file holds either the old or the new bytes.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Everything but the RFC 3986 unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything except RFC 3986 unreserved characters (Python `urllib.parse.quote(s, safe="")`).
/// Also what keel-server and the CLI use for a path segment or query value of a URL they build.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}
