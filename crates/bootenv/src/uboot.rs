//! U-Boot environment, single or redundant, compatible with U-Boot, `mkenvimage` and
//! libubootenv (`fw_printenv`/`fw_setenv`).
//!
//! One copy is exactly `env_size` bytes:
//! * single: `u32 crc32 | data[env_size - 4]`
//! * redundant: `u32 crc32 | u8 flags | data[env_size - 5]`
//!
//! `data` is `name=value\0name=value\0…\0` (an empty entry ends the list) followed by
//! padding; the little-endian CRC-32 covers the whole data area, padding included. keel
//! writes variables sorted by name (as U-Boot and libubootenv do) and pads with 0x00.
//!
//! Redundant copies: the valid copy with the newer `flags` counter is current (libubootenv's
//! "incremental" rule for files and block devices: higher wins, 0 beats 255, equal → copy 0).
//! [`UbootEnv::commit`] writes the *other* copy with `flags + 1` and fsyncs it; the current
//! copy is never touched, so a power cut leaves the old copy current (the new one fails its
//! CRC or was never written). NOR-flash "boolean" flags (MTD) are not supported.
//!
//! A/B boot counting (U-Boot `CONFIG_BOOTCOUNT_LIMIT` + `CONFIG_BOOTCOUNT_ENV`): the updater
//! sets [`UPGRADE_AVAILABLE`]`=1` and [`BOOTCOUNT`]`=0` together with the new slot variable in
//! one commit; U-Boot increments `bootcount` on each boot while `upgrade_available=1` and runs
//! `altbootcmd` (switch back) once `bootcount > bootlimit`; the confirm step sets
//! `upgrade_available=0` and `bootcount=0` in one commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::crc::crc32;
use crate::error::{EnvError, Result};
use crate::storage::{replace_file, write_in_place, FsStorage, SharedStorage, Storage};
use crate::BootEnv;

const FORMAT: &str = "U-Boot env";

/// Boot counter incremented by U-Boot while [`UPGRADE_AVAILABLE`] is 1.
pub const BOOTCOUNT: &str = "bootcount";
/// Boots allowed before U-Boot runs `altbootcmd` (`bootcount > bootlimit`).
pub const BOOTLIMIT: &str = "bootlimit";
/// 1 while a freshly installed slot is on trial; enables boot counting in the environment.
pub const UPGRADE_AVAILABLE: &str = "upgrade_available";
/// Command U-Boot runs instead of `bootcmd` when the boot limit is exceeded.
pub const ALTBOOTCMD: &str = "altbootcmd";

/// One line of `fw_env.config`: `device offset envsize [sectorsize [numsectors]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDevice {
    /// File or block device holding the copy.
    pub path: PathBuf,
    /// Byte offset; negative counts back from the end of the device.
    pub offset: i64,
    /// Size of one copy in bytes (`CONFIG_ENV_SIZE`).
    pub env_size: usize,
    /// Erase-sector size (informational for files and block devices).
    pub sector_size: Option<u64>,
    /// Number of sectors (informational).
    pub num_sectors: Option<u64>,
}

/// Parsed `fw_env.config`: one device (single env) or two (redundant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// The copies, in order.
    pub devices: Vec<EnvDevice>,
}

fn parse_c_int(token: &str) -> Option<i64> {
    // C `%lli`: optional sign, 0x/0X hex, leading 0 octal, else decimal.
    let (neg, digits) = match token.as_bytes().first() {
        Some(b'-') => (true, token.get(1..)?),
        Some(b'+') => (false, token.get(1..)?),
        _ => (false, token),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(digits.get(1..)?, 8).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -value } else { value })
}

fn parse_c_hex(token: &str) -> Option<u64> {
    // C `%zx`/`%lx`: hex with optional 0x prefix.
    let digits = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
        .unwrap_or(token);
    u64::from_str_radix(digits, 16).ok()
}

impl FwEnvConfig {
    /// Parses the text of an `fw_env.config` as libubootenv does: `#` lines and lines with
    /// fewer than three fields are skipped, the offset is a C integer (`0x…` hex, `0…`
    /// octal, decimal, may be negative), sizes are hexadecimal, at most two devices are
    /// used, and both must have the same size.
    pub fn parse(text: &str) -> Result<FwEnvConfig> {
        let mut devices = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            if line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 3 {
                continue;
            }
            let err = |reason: String| EnvError::Config {
                line: line_no,
                reason,
            };
            let offset =
                parse_c_int(fields[1]).ok_or_else(|| err(format!("bad offset {:?}", fields[1])))?;
            let env_size = parse_c_hex(fields[2])
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| err(format!("bad env size {:?}", fields[2])))?;
            if env_size < 6 {
                return Err(err(format!("env size {env_size:#x} too small")));
            }
            let sector_size = match fields.get(3) {
                Some(t) => {
                    Some(parse_c_hex(t).ok_or_else(|| err(format!("bad sector size {t:?}")))?)
                }
                None => None,
            };
            let num_sectors = match fields.get(4) {
                Some(t) => {
                    Some(parse_c_hex(t).ok_or_else(|| err(format!("bad sector count {t:?}")))?)
                }
                None => None,
            };
            devices.push(EnvDevice {
                path: PathBuf::from(fields[0]),
                offset,
                env_size,
                sector_size,
                num_sectors,
            });
            if devices.len() == 2 {
                if devices[0].env_size != devices[1].env_size {
                    return Err(err("the two copies have different sizes".into()));
                }
                break;
            }
        }
        if devices.is_empty() {
            return Err(EnvError::Config {
                line: 0,
                reason: "no device line".into(),
            });
        }
        Ok(FwEnvConfig { devices })
    }

    /// Reads and parses a config file through `storage`.
    pub fn load(storage: &dyn Storage, path: &Path) -> Result<FwEnvConfig> {
        let bytes = storage
            .read(path)
            .map_err(|e| EnvError::io("read", path, e))?;
        Self::parse(&String::from_utf8_lossy(&bytes))
    }

    /// A single-copy config.
    pub fn single(path: impl Into<PathBuf>, offset: i64, env_size: usize) -> FwEnvConfig {
        FwEnvConfig {
            devices: vec![EnvDevice {
                path: path.into(),
                offset,
                env_size,
                sector_size: None,
                num_sectors: None,
            }],
        }
    }

    /// A redundant config with two copies of `env_size` bytes.
    pub fn redundant(
        first: (impl Into<PathBuf>, i64),
        second: (impl Into<PathBuf>, i64),
        env_size: usize,
    ) -> FwEnvConfig {
        let dev = |(path, offset): (PathBuf, i64)| EnvDevice {
            path,
            offset,
            env_size,
            sector_size: None,
            num_sectors: None,
        };
        FwEnvConfig {
            devices: vec![
                dev((first.0.into(), first.1)),
                dev((second.0.into(), second.1)),
            ],
        }
    }

    /// True with two copies.
    pub fn is_redundant(&self) -> bool {
        self.devices.len() > 1
    }

    /// Size of one copy.
    pub fn env_size(&self) -> usize {
        self.devices.first().map_or(0, |d| d.env_size)
    }

    /// The config as `fw_env.config` text (sizes in hex), readable by libubootenv.
    pub fn to_config_string(&self) -> String {
        let mut out = String::from("# device offset size [sector-size [sectors]]\n");
        for d in &self.devices {
            let offset = if d.offset < 0 {
                format!("-{:#x}", d.offset.unsigned_abs())
            } else {
                format!("{:#x}", d.offset)
            };
            out.push_str(&format!(
                "{} {} {:#x}",
                d.path.display(),
                offset,
                d.env_size
            ));
            if let Some(s) = d.sector_size {
                out.push_str(&format!(" {s:#x}"));
                if let Some(n) = d.num_sectors {
                    out.push_str(&format!(" {n:#x}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Variables of a U-Boot environment: raw bytes, sorted by name (strcmp order).
pub type Vars = BTreeMap<Vec<u8>, Vec<u8>>;

/// One decoded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCopy {
    /// The variables (for duplicates the last one wins, as in libubootenv).
    pub vars: Vars,
    /// The flags byte of a redundant copy.
    pub flags: Option<u8>,
}

/// Decodes one copy of `bytes.len()` bytes: checks the CRC and parses the entries. Entries
/// without `=` are skipped (as libubootenv does); an entry that is not NUL-terminated
/// inside the data area is an error.
pub fn decode_copy(bytes: &[u8], redundant: bool) -> Result<DecodedCopy> {
    let header = if redundant { 5 } else { 4 };
    if bytes.len() <= header {
        return Err(EnvError::WrongSize {
            format: FORMAT,
            expected: header + 1,
            actual: bytes.len(),
        });
    }
    let stored = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let data = &bytes[header..];
    let computed = crc32(data);
    if stored != computed {
        return Err(EnvError::BadCrc {
            format: FORMAT,
            stored,
            computed,
        });
    }
    let mut vars = Vars::new();
    let mut pos = 0usize;
    while let Some(&b) = data.get(pos) {
        if b == 0 {
            break;
        }
        let rest = &data[pos..];
        let len = rest.iter().position(|&c| c == 0).ok_or_else(|| {
            EnvError::malformed(
                FORMAT,
                header + pos,
                "last entry is not NUL-terminated inside the data area",
            )
        })?;
        let entry = &rest[..len];
        if let Some(eq) = entry.iter().position(|&c| c == b'=') {
            vars.insert(entry[..eq].to_vec(), entry[eq + 1..].to_vec());
        }
        pos += len + 1;
    }
    Ok(DecodedCopy {
        vars,
        flags: redundant.then_some(bytes[4]),
    })
}

/// Encodes one copy of `env_size` bytes (CRC, optional flags byte, sorted entries, 0x00
/// padding).
pub fn encode_copy(vars: &Vars, env_size: usize, flags: Option<u8>) -> Result<Vec<u8>> {
    let header = if flags.is_some() { 5 } else { 4 };
    let available = env_size.saturating_sub(header);
    let mut data = Vec::with_capacity(available);
    for (k, v) in vars {
        validate_var(k, v)?;
        data.extend_from_slice(k);
        data.push(b'=');
        data.extend_from_slice(v);
        data.push(0);
    }
    data.push(0);
    if data.len() > available {
        return Err(EnvError::TooLarge {
            format: FORMAT,
            needed: data.len(),
            available,
        });
    }
    data.resize(available, 0);
    let mut out = Vec::with_capacity(env_size);
    out.extend_from_slice(&crc32(&data).to_le_bytes());
    if let Some(f) = flags {
        out.push(f);
    }
    out.extend_from_slice(&data);
    Ok(out)
}

fn validate_var(key: &[u8], value: &[u8]) -> Result<()> {
    let reason = if key.is_empty() {
        "empty name"
    } else if key.contains(&b'=') {
        "'=' in the name"
    } else if key.contains(&0) || value.contains(&0) {
        "NUL character"
    } else {
        return Ok(());
    };
    Err(EnvError::InvalidVariable {
        format: FORMAT,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.into(),
    })
}

/// Which redundant copy is current (libubootenv "incremental" rule). `None` if neither is
/// valid.
pub fn select_current(valid: [bool; 2], flags: [u8; 2]) -> Option<usize> {
    match valid {
        [false, false] => None,
        [true, false] => Some(0),
        [false, true] => Some(1),
        [true, true] => Some(match flags {
            [0xFF, 0] => 1,
            [0, 0xFF] => 0,
            [a, b] if b > a => 1,
            _ => 0,
        }),
    }
}

/// Outcome of loading one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStatus {
    /// CRC and entries valid; the flags byte of a redundant copy.
    Valid {
        /// Flags byte (redundant only).
        flags: Option<u8>,
    },
    /// Unusable; why.
    Invalid(String),
}

/// A loaded U-Boot environment with staged changes (see module docs for the write rule).
#[derive(Debug)]
pub struct UbootEnv {
    storage: SharedStorage,
    config: FwEnvConfig,
    vars: Vars,
    copies: Vec<CopyStatus>,
    current: usize,
    current_flags: u8,
    dirty: bool,
}

impl UbootEnv {
    /// Loads the environment described by `config`. Fails with [`EnvError::NoValidCopy`]
    /// when no copy is valid (use [`UbootEnv::open_or_default`] to start from defaults, as
    /// `fw_setenv -f` does).
    pub fn open(storage: SharedStorage, config: FwEnvConfig) -> Result<UbootEnv> {
        let mut env = Self::load(storage, config)?;
        if !env
            .copies
            .iter()
            .any(|c| matches!(c, CopyStatus::Valid { .. }))
        {
            let errors = env
                .copies
                .iter()
                .map(|c| match c {
                    CopyStatus::Invalid(e) => e.clone(),
                    CopyStatus::Valid { .. } => String::new(),
                })
                .collect();
            return Err(EnvError::NoValidCopy {
                format: FORMAT,
                errors,
            });
        }
        env.dirty = false;
        Ok(env)
    }

    /// Loads the environment; if no copy is valid, starts from `defaults` and marks the
    /// environment dirty so the next [`BootEnv::commit`] writes it.
    pub fn open_or_default(
        storage: SharedStorage,
        config: FwEnvConfig,
        defaults: &[(&str, &str)],
    ) -> Result<UbootEnv> {
        let mut env = Self::load(storage, config)?;
        if !env
            .copies
            .iter()
            .any(|c| matches!(c, CopyStatus::Valid { .. }))
        {
            env.vars = defaults
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            env.dirty = true;
        }
        Ok(env)
    }

    /// Loads `/etc/fw_env.config`-style config file `config_path` from the real filesystem.
    pub fn open_config_file(config_path: &Path) -> Result<UbootEnv> {
        let storage = FsStorage::shared();
        let config = FwEnvConfig::load(storage.as_ref(), config_path)?;
        Self::open(storage, config)
    }

    /// Writes a fresh environment with `vars` to every copy (flags 1 on copy 0 and 0 on copy
    /// 1, so copy 0 is current), e.g. to provision an image. Files are created at the needed
    /// size when absent.
    pub fn provision(storage: SharedStorage, config: FwEnvConfig, vars: &Vars) -> Result<UbootEnv> {
        let redundant = config.is_redundant();
        for (i, dev) in config.devices.iter().enumerate() {
            let flags = redundant.then_some(if i == 0 { 1 } else { 0 });
            let bytes = encode_copy(vars, dev.env_size, flags)?;
            let offset = resolve_offset(storage.as_ref(), dev)?;
            match storage.metadata(&dev.path) {
                Ok(_) => write_in_place(storage.as_ref(), &dev.path, offset, &bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut file = vec![0u8; usize::try_from(offset).unwrap_or(0)];
                    file.extend_from_slice(&bytes);
                    replace_file(storage.as_ref(), &dev.path, &file)?;
                }
                Err(e) => return Err(EnvError::io("stat", &dev.path, e)),
            }
        }
        Self::open(storage, config)
    }

    fn load(storage: SharedStorage, config: FwEnvConfig) -> Result<UbootEnv> {
        let redundant = config.is_redundant();
        let mut copies = Vec::new();
        let mut decoded = Vec::new();
        for dev in &config.devices {
            let result =
                read_copy(storage.as_ref(), dev).and_then(|bytes| decode_copy(&bytes, redundant));
            match result {
                Ok(d) => {
                    copies.push(CopyStatus::Valid { flags: d.flags });
                    decoded.push(Some(d));
                }
                // An unreadable copy (EIO) is one bad copy, as for a CRC error: libubootenv's
                // fw_env_load reads both copies and uses the valid one (libuboot.c,
                // libuboot_load: "if (!crc0_ok && !crc1_ok) ... default"); so does U-Boot
                // (env_import_redund). Recorded, not fatal; the next commit overwrites it.
                Err(e) => {
                    copies.push(CopyStatus::Invalid(format!("{}: {e}", dev.path.display())));
                    decoded.push(None);
                }
            }
        }
        let valid = [
            decoded.first().is_some_and(Option::is_some),
            decoded.get(1).is_some_and(Option::is_some),
        ];
        let flags = [0, 1].map(|i| {
            decoded
                .get(i)
                .and_then(|d| d.as_ref())
                .and_then(|d| d.flags)
                .unwrap_or(0)
        });
        let current = if redundant {
            select_current(valid, flags).unwrap_or(0)
        } else {
            0
        };
        let vars = decoded
            .get(current)
            .cloned()
            .flatten()
            .map(|d| d.vars)
            .unwrap_or_default();
        Ok(UbootEnv {
            storage,
            config,
            vars,
            copies,
            current,
            current_flags: flags.get(current).copied().unwrap_or(0),
            dirty: false,
        })
    }

    /// The config this environment was loaded with.
    pub fn config(&self) -> &FwEnvConfig {
        &self.config
    }

    /// Status of each copy as loaded.
    pub fn copies(&self) -> &[CopyStatus] {
        &self.copies
    }

    /// Index of the copy the variables were read from (the one the next commit does *not*
    /// write, for a redundant environment).
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// Flags byte of the current copy (0 for a single env).
    pub fn current_flags(&self) -> u8 {
        self.current_flags
    }

    /// All variables (raw bytes).
    pub fn raw_vars(&self) -> &Vars {
        &self.vars
    }

    /// Raw value of `key`.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&[u8]> {
        self.vars.get(key).map(Vec::as_slice)
    }

    /// True if there are uncommitted changes.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Rewrites a damaged redundant copy (bad CRC, unreadable, truncated) from the current
    /// one: a [`BootEnv::commit`] of the unchanged variables, which goes to the non-current
    /// copy, i.e. the damaged one, with `flags + 1`; the good copy is not touched. Returns
    /// whether a copy was rewritten (never for a single environment, or when both are fine).
    pub fn repair(&mut self) -> Result<bool> {
        let damaged = self.config.is_redundant()
            && self
                .copies
                .iter()
                .any(|c| matches!(c, CopyStatus::Invalid(_)));
        if !damaged {
            return Ok(false);
        }
        self.dirty = true;
        self.commit()?;
        Ok(true)
    }
}

fn resolve_offset(storage: &dyn Storage, dev: &EnvDevice) -> Result<u64> {
    if dev.offset >= 0 {
        return Ok(dev.offset as u64);
    }
    let len = storage
        .metadata(&dev.path)
        .map_err(|e| EnvError::io("stat", &dev.path, e))?
        .len;
    len.checked_sub(dev.offset.unsigned_abs())
        .ok_or_else(|| EnvError::Config {
            line: 0,
            reason: format!(
                "offset {} is before the start of {}",
                dev.offset,
                dev.path.display()
            ),
        })
}

fn read_copy(storage: &dyn Storage, dev: &EnvDevice) -> Result<Vec<u8>> {
    let offset = resolve_offset(storage, dev)?;
    match storage.read_at(&dev.path, offset, dev.env_size) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            // A truncated file: report how much of the copy is there.
            let len = storage.metadata(&dev.path).map(|m| m.len).unwrap_or(0);
            Err(EnvError::WrongSize {
                format: FORMAT,
                expected: dev.env_size,
                actual: usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX),
            })
        }
        Err(e) => Err(EnvError::io("read", &dev.path, e)),
    }
}

/// [`BootEnv`] over a U-Boot environment. `commit` writes the non-current copy with
/// `flags + 1` (redundant; power-safe) or rewrites the single copy (atomically via rename
/// when it is a whole regular file, else in place, which is not power-safe).
impl BootEnv for UbootEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.vars
            .get(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        validate_var(key.as_bytes(), value.as_bytes())?;
        let old = self
            .vars
            .insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
        if old.as_deref() != Some(value.as_bytes()) {
            self.dirty = true;
        }
        Ok(())
    }

    fn unset(&mut self, key: &str) -> Result<()> {
        if self.vars.remove(key.as_bytes()).is_some() {
            self.dirty = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let redundant = self.config.is_redundant();
        let (target, flags) = if redundant {
            (
                1 - self.current.min(1),
                Some(self.current_flags.wrapping_add(1)),
            )
        } else {
            (0, None)
        };
        let dev = self
            .config
            .devices
            .get(target)
            .ok_or_else(|| EnvError::State("no device for the target copy".into()))?;
        let bytes = encode_copy(&self.vars, dev.env_size, flags)?;
        let offset = resolve_offset(self.storage.as_ref(), dev)?;
        let info = self
            .storage
            .metadata(&dev.path)
            .map_err(|e| EnvError::io("stat", &dev.path, e))?;
        if !redundant && info.regular && offset == 0 && info.len == dev.env_size as u64 {
            replace_file(self.storage.as_ref(), &dev.path, &bytes)?;
        } else {
            write_in_place(self.storage.as_ref(), &dev.path, offset, &bytes)?;
        }
        if let Some(slot) = self.copies.get_mut(target) {
            *slot = CopyStatus::Valid { flags };
        }
        self.current = target;
        self.current_flags = flags.unwrap_or(0);
        self.dirty = false;
        Ok(())
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.vars
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
    fn config_parsing() {
        let c = FwEnvConfig::parse(
            "# comment\n/tmp/a 0x0 0x4000\n\n/tmp/b 010 4000 1000 2\n/tmp/c 0 0x4000\n",
        )
        .unwrap();
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.devices[1].offset, 8);
        assert_eq!(c.devices[1].env_size, 0x4000);
        assert_eq!(c.devices[1].sector_size, Some(0x1000));
        assert!(FwEnvConfig::parse("/a 0 0x4000\n/b 0 0x2000\n").is_err());
        assert!(FwEnvConfig::parse("/a zz 0x4000\n").is_err());
        assert_eq!(FwEnvConfig::parse(&c.to_config_string()).unwrap(), c);
    }

    #[test]
    fn flags_rule() {
        assert_eq!(select_current([true, true], [1, 2]), Some(1));
        assert_eq!(select_current([true, true], [0xFF, 0]), Some(1));
        assert_eq!(select_current([true, true], [0, 0xFF]), Some(0));
        assert_eq!(select_current([true, true], [3, 3]), Some(0));
        assert_eq!(select_current([false, true], [9, 0]), Some(1));
        assert_eq!(select_current([false, false], [0, 0]), None);
    }

    #[test]
    fn round_trip() {
        let mut vars = Vars::new();
        vars.insert(b"bootcmd".to_vec(), b"run a; run b".to_vec());
        vars.insert(b"empty".to_vec(), Vec::new());
        let bytes = encode_copy(&vars, 0x100, Some(7)).unwrap();
        assert_eq!(bytes.len(), 0x100);
        let d = decode_copy(&bytes, true).unwrap();
        assert_eq!((d.vars, d.flags), (vars, Some(7)));
    }
}
