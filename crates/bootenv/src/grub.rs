//! GRUB environment block (`grubenv`), compatible with `grub-editenv` and GRUB's
//! `load_env`/`save_env`.
//!
//! The file is a fixed-size text block (normally 1024 bytes): the signature
//! `# GRUB Environment Block\n`, then one `name=value\n` line per variable, then `#` padding
//! to the end. In values, `\` is written as `\\` and a newline as `\` + newline. Lines
//! starting with `#` are comments. There is no checksum and no second copy, so keel writes a
//! new block to a temporary file, fsyncs it, renames it over the old one and fsyncs the
//! directory ([`GrubEnvFile::commit`]).
//!
//! GRUB itself (`save_env`, grub-core/commands/loadenv.c) rewrites the block *in place*
//! through the blocklist of the existing file, all 1024 bytes, without a checksum, on every
//! boot that saves a variable; a power cut there can leave a garbage sector, after which
//! `load_env` fails ("invalid environment block") or stops at the first broken line
//! (grub-core/lib/envblk.c, `grub_envblk_iterate`). [`GrubEnvFile::open_redundant`] therefore
//! keeps a second copy, [`backup_path`] (`grubenv.keel`), written by keel before the main block
//! on every commit; keel's documented grub.cfg (docs/bootenv.md) loads it when the main block
//! is unreadable or names no bootable slot, and the next commit repairs the main block.

use std::path::{Path, PathBuf};

use crate::error::{EnvError, Result};
use crate::storage::{replace_file, FsStorage, SharedStorage};
use crate::BootEnv;

const FORMAT: &str = "grubenv";

/// First line of every environment block.
pub const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";
/// Size `grub-editenv create` uses.
pub const DEFAULT_SIZE: usize = 1024;
/// Largest block keel accepts (GRUB itself has no limit; real blocks are 1 KiB).
pub const MAX_SIZE: usize = 64 * 1024;

/// A parsed environment block: variables in file order (names unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubEnv {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
}

impl Default for GrubEnv {
    fn default() -> Self {
        GrubEnv {
            entries: Vec::new(),
            size: DEFAULT_SIZE,
        }
    }
}

fn c_string(bytes: &[u8]) -> Vec<u8> {
    // GRUB hands names and values to C code: they end at the first NUL.
    bytes.iter().take_while(|&&b| b != 0).copied().collect()
}

impl GrubEnv {
    /// An empty block of [`DEFAULT_SIZE`] bytes.
    pub fn new() -> GrubEnv {
        GrubEnv::default()
    }

    /// Parses a block the way GRUB's `grub_envblk_iterate` reads it. A variable line that
    /// is cut off (no `=` or no terminating newline before the end of the block), a missing
    /// signature or a size outside 26..=[`MAX_SIZE`] is an error. If a name occurs twice the
    /// last value wins (as with `load_env`).
    pub fn parse(bytes: &[u8]) -> Result<GrubEnv> {
        Self::parse_inner(bytes, false).map(|(env, _)| env)
    }

    /// Reads a block the way GRUB's `load_env` does (grub-core/commands/loadenv.c and
    /// grub-core/lib/envblk.c): a wrong size or a missing signature fails (GRUB: "invalid
    /// environment block"), but a broken line only ends the iteration, keeping the variables
    /// before it. Returns the variables and, for a block GRUB reads only in part, what is
    /// broken.
    pub fn parse_like_grub(bytes: &[u8]) -> Result<(GrubEnv, Option<String>)> {
        Self::parse_inner(bytes, true)
    }

    fn parse_inner(bytes: &[u8], lenient: bool) -> Result<(GrubEnv, Option<String>)> {
        if bytes.len() > MAX_SIZE || bytes.len() <= SIGNATURE.len() {
            return Err(EnvError::WrongSize {
                format: FORMAT,
                expected: DEFAULT_SIZE,
                actual: bytes.len(),
            });
        }
        if !bytes.starts_with(SIGNATURE) {
            return Err(EnvError::malformed(
                FORMAT,
                0,
                "missing \"# GRUB Environment Block\" signature",
            ));
        }
        let end = bytes.len();
        let mut env = GrubEnv {
            entries: Vec::new(),
            size: end,
        };
        let mut p = SIGNATURE.len();
        let broken = |env: GrubEnv, e: EnvError| {
            if lenient {
                Ok((env, Some(e.to_string())))
            } else {
                Err(e)
            }
        };
        while p < end {
            if bytes[p] != b'#' {
                let name_start = p;
                while p < end && bytes[p] != b'=' {
                    p += 1;
                }
                if p == end {
                    return broken(
                        env,
                        EnvError::malformed(FORMAT, name_start, "variable line without '='"),
                    );
                }
                let name = c_string(&bytes[name_start..p]);
                p += 1;
                let mut value = Vec::new();
                loop {
                    match bytes.get(p) {
                        None => {
                            return broken(
                                env,
                                EnvError::malformed(
                                    FORMAT,
                                    name_start,
                                    "variable line not terminated by a newline",
                                ),
                            )
                        }
                        Some(b'\n') => break,
                        Some(b'\\') => {
                            let Some(&escaped) = bytes.get(p + 1) else {
                                return broken(
                                    env,
                                    EnvError::malformed(
                                        FORMAT,
                                        p,
                                        "backslash at the end of the block",
                                    ),
                                );
                            };
                            value.push(escaped);
                            p += 2;
                        }
                        Some(&c) => {
                            value.push(c);
                            p += 1;
                        }
                    }
                }
                env.set_bytes(&name, &c_string(&value));
            }
            // Skip to the start of the next line (escapes included, as GRUB does).
            while p < end {
                match bytes[p] {
                    b'\\' => p += 2,
                    b'\n' => break,
                    _ => p += 1,
                }
            }
            p += 1;
        }
        Ok((env, None))
    }

    /// Encodes the block at its size (that of the parsed file, or [`DEFAULT_SIZE`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = SIGNATURE.to_vec();
        for (name, value) in &self.entries {
            validate(name, value)?;
            out.extend_from_slice(name);
            out.push(b'=');
            for &c in value {
                if c == b'\\' || c == b'\n' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'\n');
        }
        if out.len() > self.size {
            return Err(EnvError::TooLarge {
                format: FORMAT,
                needed: out.len(),
                available: self.size,
            });
        }
        out.resize(self.size, b'#');
        Ok(out)
    }

    /// Block size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Changes the block size used by [`GrubEnv::to_bytes`].
    pub fn set_size(&mut self, size: usize) {
        self.size = size;
    }

    /// Variables in file order.
    pub fn entries(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.entries
    }

    /// Raw value of `name`.
    pub fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets a variable in place, or appends it (as `grub-editenv set`). Not validated here;
    /// [`GrubEnv::to_bytes`] rejects what cannot be encoded.
    pub fn set_bytes(&mut self, name: &[u8], value: &[u8]) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_vec(),
            None => self.entries.push((name.to_vec(), value.to_vec())),
        }
    }

    /// Removes a variable; returns whether it existed.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        before != self.entries.len()
    }
}

fn validate(name: &[u8], value: &[u8]) -> Result<()> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name.starts_with(b"#") {
        "a name starting with '#' would read back as a comment"
    } else if name.contains(&b'=') || name.contains(&b'\n') {
        "'=' or newline in the name"
    } else if name.contains(&0) || value.contains(&0) {
        "NUL character"
    } else {
        return Ok(());
    };
    Err(EnvError::InvalidVariable {
        format: FORMAT,
        key: String::from_utf8_lossy(name).into_owned(),
        reason: reason.into(),
    })
}

/// The second copy keel keeps of `grubenv`: `<grubenv>.keel` in the same directory.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".keel");
    path.with_file_name(name)
}

/// True when the RAUC variables of `env` let the loader boot some slot: a slot named in
/// `ORDER` has `<slot>_OK=1`. Every environment keel writes satisfies it (the running slot
/// stays OK), so an environment that does not is damaged or was never provisioned; keel's
/// grub.cfg and [`GrubEnvFile::open_redundant`] then take the other copy.
///
/// A block without `ORDER` is read with grub.cfg's default, `A B`.
pub fn names_bootable_slot(env: &GrubEnv) -> bool {
    let order = env.get_bytes(b"ORDER").unwrap_or(b"A B").to_vec();
    String::from_utf8_lossy(&order)
        .split_whitespace()
        .any(|slot| env.get_bytes(format!("{slot}_OK").as_bytes()) == Some(b"1".as_slice()))
}

/// One copy as read: missing, unusable (why), or what GRUB's `load_env` reads from it.
#[derive(Debug)]
enum Copy {
    Missing,
    Unusable(String),
    Loaded(GrubEnv, Option<String>),
}

fn load_copy(storage: &dyn crate::storage::Storage, path: &Path) -> Copy {
    match storage.read(path) {
        Ok(bytes) => match GrubEnv::parse_like_grub(&bytes) {
            Ok((env, damage)) => Copy::Loaded(env, damage),
            Err(e) => Copy::Unusable(format!("{}: {e}", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Copy::Missing,
        Err(e) => Copy::Unusable(format!("{}: read: {e}", path.display())),
    }
}

/// A `grubenv` file with staged changes (and, with [`GrubEnvFile::open_redundant`], its
/// second copy).
#[derive(Debug)]
pub struct GrubEnvFile {
    storage: SharedStorage,
    path: PathBuf,
    backup: Option<PathBuf>,
    env: GrubEnv,
    dirty: bool,
    /// A copy is damaged or missing: the next commit rewrites both even without changes.
    repair: bool,
    problems: Vec<String>,
    from_backup: bool,
}

impl GrubEnvFile {
    /// Loads `path`. A missing file yields an empty environment (written on commit); an
    /// invalid one is an error.
    pub fn open(storage: SharedStorage, path: impl Into<PathBuf>) -> Result<GrubEnvFile> {
        let path = path.into();
        let env = match storage.read(&path) {
            Ok(bytes) => GrubEnv::parse(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => GrubEnv::new(),
            Err(e) => return Err(EnvError::io("read", &path, e)),
        };
        Ok(GrubEnvFile {
            storage,
            path,
            backup: None,
            env,
            dirty: false,
            repair: false,
            problems: Vec::new(),
            from_backup: false,
        })
    }

    /// Loads `path` with its second copy [`backup_path`], choosing the copy exactly as keel's
    /// grub.cfg does: the main block if GRUB's `load_env` reads it and it
    /// [names a bootable slot](names_bootable_slot), else the backup under the same rule.
    /// A damaged, unreadable (I/O error) or missing copy is recorded in
    /// [`GrubEnvFile::problems`], and the next [`BootEnv::commit`] rewrites both copies, backup
    /// first, from the good one. Both missing: an empty environment. Neither usable:
    /// [`EnvError::NoValidCopy`].
    pub fn open_redundant(storage: SharedStorage, path: impl Into<PathBuf>) -> Result<GrubEnvFile> {
        let path = path.into();
        let backup = backup_path(&path);
        let main = load_copy(storage.as_ref(), &path);
        let second = load_copy(storage.as_ref(), &backup);
        let mut problems = Vec::new();
        let usable = |c: &Copy| matches!(c, Copy::Loaded(env, _) if names_bootable_slot(env));
        let describe = |c: &Copy, p: &Path| match c {
            Copy::Missing => format!("{}: missing", p.display()),
            Copy::Unusable(why) => why.clone(),
            Copy::Loaded(_, Some(damage)) => {
                format!("{}: GRUB reads it only in part: {damage}", p.display())
            }
            Copy::Loaded(..) => format!("{}: names no bootable slot", p.display()),
        };
        let (env, from_backup) = match (main, second) {
            (Copy::Missing, Copy::Missing) => (GrubEnv::new(), false),
            (main, second) if usable(&main) => {
                if !matches!(second, Copy::Loaded(_, None)) {
                    problems.push(describe(&second, &backup));
                }
                let Copy::Loaded(env, damage) = main else {
                    unreachable!("usable() holds only for a loaded copy")
                };
                if let Some(damage) = damage {
                    problems.push(format!(
                        "{}: GRUB reads it only in part: {damage}",
                        path.display()
                    ));
                }
                (env, false)
            }
            (main, second) if usable(&second) => {
                problems.push(describe(&main, &path));
                let Copy::Loaded(env, _) = second else {
                    unreachable!("usable() holds only for a loaded copy")
                };
                (env, true)
            }
            // Neither names a bootable slot: a loaded main block still beats nothing (e.g. a
            // grubenv created by grub-editenv before keel provisioned its variables).
            (Copy::Loaded(env, damage), second) => {
                if let Some(damage) = damage {
                    problems.push(format!("{}: {damage}", path.display()));
                }
                if !matches!(second, Copy::Loaded(..)) {
                    problems.push(describe(&second, &backup));
                }
                (env, false)
            }
            (main, second) => {
                return Err(EnvError::NoValidCopy {
                    format: FORMAT,
                    errors: vec![describe(&main, &path), describe(&second, &backup)],
                })
            }
        };
        Ok(GrubEnvFile {
            storage,
            path,
            backup: Some(backup),
            env,
            dirty: false,
            repair: !problems.is_empty(),
            problems,
            from_backup,
        })
    }

    /// What was wrong with a copy when it was loaded (empty when both were fine).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// True if the variables came from the second copy because the main block was unusable.
    pub fn from_backup(&self) -> bool {
        self.from_backup
    }

    /// The second copy's path, if this file keeps one.
    pub fn backup(&self) -> Option<&Path> {
        self.backup.as_deref()
    }

    /// [`GrubEnvFile::open`] on the real filesystem.
    pub fn open_path(path: impl Into<PathBuf>) -> Result<GrubEnvFile> {
        Self::open(FsStorage::shared(), path)
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The environment with staged changes.
    pub fn env(&self) -> &GrubEnv {
        &self.env
    }

    /// Mutable access (marks the file dirty).
    pub fn env_mut(&mut self) -> &mut GrubEnv {
        self.dirty = true;
        &mut self.env
    }
}

/// [`BootEnv`] over a grubenv file; `commit` replaces the file atomically (temp + fsync +
/// rename + directory fsync); with a second copy, the backup first, then the main block.
impl BootEnv for GrubEnvFile {
    fn get(&self, key: &str) -> Option<String> {
        self.env
            .get_bytes(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        validate(key.as_bytes(), value.as_bytes())?;
        self.env.set_bytes(key.as_bytes(), value.as_bytes());
        self.dirty = true;
        Ok(())
    }

    fn unset(&mut self, key: &str) -> Result<()> {
        if self.env.remove(key.as_bytes()) {
            self.dirty = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if !self.dirty && !self.repair {
            return Ok(());
        }
        let bytes = self.env.to_bytes()?;
        // Backup first: until the main block is replaced the loader keeps reading the main
        // block (old or new, never torn by a rename); if the main block is damaged later by
        // the loader's own in-place save_env, the backup holds this state.
        if let Some(backup) = &self.backup {
            replace_file(self.storage.as_ref(), backup, &bytes)?;
        }
        replace_file(self.storage.as_ref(), &self.path, &bytes)?;
        self.dirty = false;
        self.repair = false;
        Ok(())
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.env
            .entries()
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let mut env = GrubEnv::new();
        env.set_bytes(b"a", b"x\\y");
        env.set_bytes(b"b", b"l1\nl2");
        let bytes = env.to_bytes().unwrap();
        assert_eq!(bytes.len(), DEFAULT_SIZE);
        assert!(bytes.starts_with(b"# GRUB Environment Block\na=x\\\\y\nb=l1\\\nl2\n###"));
        assert_eq!(GrubEnv::parse(&bytes).unwrap(), env);
    }
}
