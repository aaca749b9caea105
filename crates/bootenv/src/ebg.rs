//! EFI Boot Guard environment (`BGENV.DAT`), byte-compatible with efibootguard 0.13 (Debian
//! bookworm) and every later release (the struct has not changed since 2017).
//!
//! Layout (packed, little-endian, [`ENV_SIZE`] = 132104 bytes):
//!
//! | offset | size   | field                                     |
//! |--------|--------|-------------------------------------------|
//! | 0      | 510    | `kernelfile`: 255 UTF-16LE units, NUL-terminated |
//! | 510    | 510    | `kernelparams`: 255 UTF-16LE units        |
//! | 1020   | 1      | `in_progress`                             |
//! | 1021   | 1      | `ustate` ([`UState`])                     |
//! | 1022   | 2      | `watchdog_timeout_sec`                    |
//! | 1024   | 4      | `revision`                                |
//! | 1028   | 131072 | user variables ([`UserVar`])              |
//! | 132100 | 4      | CRC-32 (zlib) of bytes 0..132100          |
//!
//! A system has [`ENV_NUM_CONFIG_PARTS`] copies, one per FAT config partition; [`BgEnvSet`]
//! handles them: which copy is current, power-safe updates, the confirm step, and
//! [`select_boot`], a pure model of the loader's choice and its own writes.

use std::path::{Path, PathBuf};

use crate::crc::crc32;
use crate::error::{EnvError, Result};
use crate::storage::{replace_file, write_in_place, FsStorage, SharedStorage};
use crate::BootEnv;

const FORMAT: &str = "BGENV.DAT";

/// UTF-16 units per string field (the last one is always NUL).
pub const ENV_STRING_LENGTH: usize = 255;
/// Size of the user-variable area (efibootguard's default `--with-mem-uservars`).
pub const ENV_MEM_USERVARS: usize = 131_072;
/// Total size of `BGENV.DAT`.
pub const ENV_SIZE: usize = OFFSET_USERDATA + ENV_MEM_USERVARS + 4;
/// Number of config partitions (copies) of a default efibootguard build.
pub const ENV_NUM_CONFIG_PARTS: usize = 2;
/// File name of the environment on each config partition.
pub const ENV_FILE_NAME: &str = "BGENV.DAT";
/// Watchdog timeout libebgenv puts into a freshly created environment.
pub const DEFAULT_WATCHDOG_TIMEOUT_SEC: u16 = 30;
/// The revision the loader writes into a copy that failed its test boot.
pub const REVISION_FAILED: u32 = 0;

const OFFSET_KERNELPARAMS: usize = 2 * ENV_STRING_LENGTH;
const OFFSET_IN_PROGRESS: usize = 4 * ENV_STRING_LENGTH;
const OFFSET_USTATE: usize = OFFSET_IN_PROGRESS + 1;
const OFFSET_WATCHDOG: usize = OFFSET_IN_PROGRESS + 2;
const OFFSET_REVISION: usize = OFFSET_IN_PROGRESS + 4;
const OFFSET_USERDATA: usize = OFFSET_IN_PROGRESS + 8;
const OFFSET_CRC: usize = OFFSET_USERDATA + ENV_MEM_USERVARS;

/// Update state of one environment copy (`ustate`). Stored as a raw byte so that unknown
/// values read from disk survive a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UState(pub u8);

impl UState {
    /// Normal state: this configuration is known good.
    pub const OK: UState = UState(0);
    /// An update was installed; the loader will boot it once as a test.
    pub const INSTALLED: UState = UState(1);
    /// The loader is booting it for the first time; a second boot in this state means the
    /// test failed.
    pub const TESTING: UState = UState(2);
    /// The test boot failed; the loader set the revision to 0 and fell back.
    pub const FAILED: UState = UState(3);
    /// Unknown state (libebgenv's "no information").
    pub const UNKNOWN: UState = UState(4);

    /// Name as `bg_printenv` prints it ("OK", "INSTALLED", ...; "UNKNOWN" for other values).
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "INSTALLED",
            2 => "TESTING",
            3 => "FAILED",
            _ => "UNKNOWN",
        }
    }

    /// Parses a number or one of the names above (case-insensitive), as `bg_setenv -s` does.
    pub fn parse(text: &str) -> Option<UState> {
        if let Ok(n) = text.trim().parse::<u8>() {
            return Some(UState(n));
        }
        match text.trim().to_ascii_uppercase().as_str() {
            "OK" => Some(UState::OK),
            "INSTALLED" => Some(UState::INSTALLED),
            "TESTING" => Some(UState::TESTING),
            "FAILED" => Some(UState::FAILED),
            "UNKNOWN" => Some(UState::UNKNOWN),
            _ => None,
        }
    }
}

impl std::fmt::Display for UState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// Type bits of a user variable (`uint64 type` of the record, efibootguard `ebgenv.h`).
pub mod user_type {
    /// A single `char`.
    pub const CHAR: u64 = 1;
    /// `uint8_t`.
    pub const UINT8: u64 = 2;
    /// `uint16_t` (little-endian).
    pub const UINT16: u64 = 3;
    /// `uint32_t`.
    pub const UINT32: u64 = 4;
    /// `uint64_t`.
    pub const UINT64: u64 = 5;
    /// `int8_t`.
    pub const SINT8: u64 = 6;
    /// `int16_t`.
    pub const SINT16: u64 = 7;
    /// `int32_t`.
    pub const SINT32: u64 = 8;
    /// `int64_t`.
    pub const SINT64: u64 = 9;
    /// NUL-terminated ASCII string (what `bg_setenv -x` writes).
    pub const STRING_ASCII: u64 = 32;
    /// One byte, 0 = false.
    pub const BOOL: u64 = 64;
    /// Internal flag: the record is deleted.
    pub const DELETED: u64 = 1 << 63;
    /// Bits 0..31: the standard type.
    pub const STANDARD_MASK: u64 = (1 << 32) - 1;
    /// Bits 32..48: free for users.
    pub const USER_MASK: u64 = ((1 << 49) - 1) & !STANDARD_MASK;
}

/// One user variable record: `key NUL | u32 payload_len | u64 type | data`, where
/// `payload_len` = 12 + data length. String values include their NUL in `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserVar {
    /// Variable name (non-empty, no NUL).
    pub key: String,
    /// Type bits, see [`user_type`].
    pub type_flags: u64,
    /// Raw value bytes.
    pub data: Vec<u8>,
}

impl UserVar {
    /// A string variable as `bg_setenv -x KEY=VALUE` stores it (type STRING_ASCII, data with
    /// trailing NUL).
    pub fn string(key: &str, value: &str) -> UserVar {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        UserVar {
            key: key.to_string(),
            type_flags: user_type::STRING_ASCII,
            data,
        }
    }

    /// The value as `bg_printenv -r` prints it, or `None` for types it cannot print.
    pub fn display_value(&self) -> Option<String> {
        let d = &self.data;
        let bytes = |n: usize| -> Option<[u8; 8]> {
            let mut b = [0u8; 8];
            b.get_mut(..n)?.copy_from_slice(d.get(..n)?);
            Some(b)
        };
        let sign_extend = |v: u64, bits: u32| -> i64 { ((v << (64 - bits)) as i64) >> (64 - bits) };
        let t = self.type_flags & user_type::STANDARD_MASK;
        Some(match t {
            user_type::STRING_ASCII => {
                let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
                String::from_utf8_lossy(d.get(..end).unwrap_or_default()).into_owned()
            }
            user_type::UINT8 => u64::from_le_bytes(bytes(1)?).to_string(),
            user_type::UINT16 => u64::from_le_bytes(bytes(2)?).to_string(),
            user_type::UINT32 => u64::from_le_bytes(bytes(4)?).to_string(),
            user_type::UINT64 => u64::from_le_bytes(bytes(8)?).to_string(),
            user_type::SINT8 => sign_extend(u64::from_le_bytes(bytes(1)?), 8).to_string(),
            user_type::SINT16 => sign_extend(u64::from_le_bytes(bytes(2)?), 16).to_string(),
            user_type::SINT32 => sign_extend(u64::from_le_bytes(bytes(4)?), 32).to_string(),
            user_type::SINT64 => (u64::from_le_bytes(bytes(8)?) as i64).to_string(),
            user_type::CHAR => char::from(*d.first()?).to_string(),
            user_type::BOOL => (if *d.first()? != 0 { "true" } else { "false" }).to_string(),
            _ => return None,
        })
    }

    fn record_len(&self) -> usize {
        self.key.len() + 1 + 4 + 8 + self.data.len()
    }
}

/// One decoded `BGENV.DAT`. The CRC is not stored: [`BgEnv::parse`] checks it and
/// [`BgEnv::to_bytes`] computes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgEnv {
    /// Kernel (or unified kernel image) to start: `file`, `C:LABEL:path` or `L:LABEL:path`.
    pub kernelfile: String,
    /// Kernel command line.
    pub kernelparams: String,
    /// 1 while an updater is writing this copy; the loader never boots such a copy.
    pub in_progress: u8,
    /// Update state, see [`UState`].
    pub ustate: UState,
    /// Hardware watchdog timeout the loader arms before starting the kernel (0 = off).
    pub watchdog_timeout_sec: u16,
    /// Revision: the valid copy with the highest revision is the current one.
    pub revision: u32,
    /// User variables in on-disk order, including records flagged DELETED.
    pub uservars: Vec<UserVar>,
}

fn decode_utf16_field(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take(ENV_STRING_LENGTH - 1) // the loader forces the last unit to NUL
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

fn encode_utf16_field(name: &str, value: &str, out: &mut [u8]) -> Result<()> {
    let units: Vec<u16> = value.encode_utf16().collect();
    if units.contains(&0) {
        return Err(EnvError::InvalidVariable {
            format: FORMAT,
            key: name.to_string(),
            reason: "contains a NUL character".into(),
        });
    }
    if units.len() > ENV_STRING_LENGTH - 1 {
        return Err(EnvError::InvalidVariable {
            format: FORMAT,
            key: name.to_string(),
            reason: format!(
                "{} UTF-16 units, at most {} fit",
                units.len(),
                ENV_STRING_LENGTH - 1
            ),
        });
    }
    for (slot, unit) in out.chunks_exact_mut(2).zip(units) {
        slot.copy_from_slice(&unit.to_le_bytes());
    }
    Ok(())
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses the user-variable area. A 0 byte where a key would start ends the list. Records
/// that run past the area or leave no terminating byte after them, have a payload shorter
/// than 12 bytes or a non-UTF-8 key are rejected (efibootguard ≥ 0.22's
/// `bgenv_validate_uservars` rejects the same areas, except non-UTF-8 keys; 0.13 would read
/// out of bounds).
pub fn parse_uservars(area: &[u8]) -> Result<Vec<UserVar>> {
    let mut vars = Vec::new();
    let mut pos = 0usize;
    while let Some(&first) = area.get(pos) {
        if first == 0 {
            break;
        }
        let base = OFFSET_USERDATA + pos;
        let rest = area.get(pos..).unwrap_or_default();
        let key_len = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            EnvError::malformed(FORMAT, base, "user variable key is not NUL-terminated")
        })?;
        let key = std::str::from_utf8(rest.get(..key_len).unwrap_or_default())
            .map_err(|_| EnvError::malformed(FORMAT, base, "user variable key is not UTF-8"))?
            .to_string();
        let len_at = key_len + 1;
        let payload_len = le_u32(rest, len_at).ok_or_else(|| {
            EnvError::malformed(
                FORMAT,
                base + len_at,
                format!("user variable {key:?}: length field truncated"),
            )
        })? as usize;
        if payload_len < 12 {
            return Err(EnvError::malformed(
                FORMAT,
                base + len_at,
                format!("user variable {key:?}: payload length {payload_len} < 12"),
            ));
        }
        let record_len = len_at
            .checked_add(payload_len)
            // The list must end with a 0 byte inside the area (efibootguard's validator
            // requires one free byte after the last record too).
            .filter(|&end| end < rest.len())
            .ok_or_else(|| {
                EnvError::malformed(
                    FORMAT,
                    base + len_at,
                    format!("user variable {key:?}: payload length {payload_len} runs past the user area (no terminating byte left)"),
                )
            })?;
        let type_flags = le_u64(rest, len_at + 4).unwrap_or_default();
        let data = rest
            .get(len_at + 12..record_len)
            .unwrap_or_default()
            .to_vec();
        vars.push(UserVar {
            key,
            type_flags,
            data,
        });
        pos += record_len;
    }
    Ok(vars)
}

impl BgEnv {
    /// A fresh environment as libebgenv creates one: everything zero except the watchdog
    /// (30 s).
    pub fn new() -> BgEnv {
        BgEnv {
            watchdog_timeout_sec: DEFAULT_WATCHDOG_TIMEOUT_SEC,
            ..BgEnv::default()
        }
    }

    /// Decodes and validates a `BGENV.DAT` image: exact size, CRC, user-variable records.
    pub fn parse(bytes: &[u8]) -> Result<BgEnv> {
        if bytes.len() != ENV_SIZE {
            return Err(EnvError::WrongSize {
                format: FORMAT,
                expected: ENV_SIZE,
                actual: bytes.len(),
            });
        }
        let stored = le_u32(bytes, OFFSET_CRC).unwrap_or_default();
        let computed = crc32(bytes.get(..OFFSET_CRC).unwrap_or_default());
        if stored != computed {
            return Err(EnvError::BadCrc {
                format: FORMAT,
                stored,
                computed,
            });
        }
        Self::parse_unchecked(bytes)
    }

    /// Decodes without checking the CRC (for diagnostics of a damaged copy). Size and
    /// user-variable structure are still validated.
    pub fn parse_unchecked(bytes: &[u8]) -> Result<BgEnv> {
        if bytes.len() != ENV_SIZE {
            return Err(EnvError::WrongSize {
                format: FORMAT,
                expected: ENV_SIZE,
                actual: bytes.len(),
            });
        }
        let field = |r: std::ops::Range<usize>| bytes.get(r).unwrap_or_default();
        Ok(BgEnv {
            kernelfile: decode_utf16_field(field(0..OFFSET_KERNELPARAMS)),
            kernelparams: decode_utf16_field(field(OFFSET_KERNELPARAMS..OFFSET_IN_PROGRESS)),
            in_progress: bytes.get(OFFSET_IN_PROGRESS).copied().unwrap_or_default(),
            ustate: UState(bytes.get(OFFSET_USTATE).copied().unwrap_or_default()),
            watchdog_timeout_sec: u16::from_le_bytes([
                bytes.get(OFFSET_WATCHDOG).copied().unwrap_or_default(),
                bytes.get(OFFSET_WATCHDOG + 1).copied().unwrap_or_default(),
            ]),
            revision: le_u32(bytes, OFFSET_REVISION).unwrap_or_default(),
            uservars: parse_uservars(field(OFFSET_USERDATA..OFFSET_CRC))?,
        })
    }

    /// Encodes to the exact 132104-byte image with a fresh CRC. Fails if a string does not
    /// fit (254 UTF-16 units) or the user variables exceed the area (one terminating 0 byte
    /// must remain, as libebgenv requires).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; ENV_SIZE];
        encode_utf16_field(
            "kernelfile",
            &self.kernelfile,
            &mut out[..OFFSET_KERNELPARAMS],
        )?;
        encode_utf16_field(
            "kernelparams",
            &self.kernelparams,
            &mut out[OFFSET_KERNELPARAMS..OFFSET_IN_PROGRESS],
        )?;
        out[OFFSET_IN_PROGRESS] = self.in_progress;
        out[OFFSET_USTATE] = self.ustate.0;
        out[OFFSET_WATCHDOG..OFFSET_WATCHDOG + 2]
            .copy_from_slice(&self.watchdog_timeout_sec.to_le_bytes());
        out[OFFSET_REVISION..OFFSET_REVISION + 4].copy_from_slice(&self.revision.to_le_bytes());
        let needed: usize = self.uservars.iter().map(UserVar::record_len).sum::<usize>() + 1;
        if needed > ENV_MEM_USERVARS {
            return Err(EnvError::TooLarge {
                format: FORMAT,
                needed,
                available: ENV_MEM_USERVARS,
            });
        }
        let mut pos = OFFSET_USERDATA;
        for var in &self.uservars {
            if var.key.is_empty() || var.key.as_bytes().contains(&0) {
                return Err(EnvError::InvalidVariable {
                    format: FORMAT,
                    key: var.key.clone(),
                    reason: "user variable keys must be non-empty and contain no NUL".into(),
                });
            }
            let payload_len =
                u32::try_from(12 + var.data.len()).map_err(|_| EnvError::TooLarge {
                    format: FORMAT,
                    needed,
                    available: ENV_MEM_USERVARS,
                })?;
            let key = var.key.as_bytes();
            out[pos..pos + key.len()].copy_from_slice(key);
            pos += key.len() + 1;
            out[pos..pos + 4].copy_from_slice(&payload_len.to_le_bytes());
            out[pos + 4..pos + 12].copy_from_slice(&var.type_flags.to_le_bytes());
            pos += 12;
            out[pos..pos + var.data.len()].copy_from_slice(&var.data);
            pos += var.data.len();
        }
        let crc = crc32(&out[..OFFSET_CRC]);
        out[OFFSET_CRC..].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// The live (not DELETED) user variable `key`.
    pub fn uservar(&self, key: &str) -> Option<&UserVar> {
        self.uservars
            .iter()
            .find(|v| v.key == key && v.type_flags & user_type::DELETED == 0)
    }

    /// Sets a user variable, replacing an existing record in place or appending a new one
    /// (libebgenv's order).
    pub fn set_uservar(&mut self, var: UserVar) {
        match self.uservars.iter_mut().find(|v| v.key == var.key) {
            Some(existing) => *existing = var,
            None => self.uservars.push(var),
        }
    }

    /// Removes user variable `key`; returns whether it existed.
    pub fn remove_uservar(&mut self, key: &str) -> bool {
        let before = self.uservars.len();
        self.uservars.retain(|v| v.key != key);
        before != self.uservars.len()
    }

    /// Reads a fixed field by libebgenv's key name (`kernelfile`, `kernelparams`,
    /// `watchdog_timeout_sec`, `revision`, `ustate`, `in_progress`) or a user variable.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "kernelfile" => self.kernelfile.clone(),
            "kernelparams" => self.kernelparams.clone(),
            "watchdog_timeout_sec" => self.watchdog_timeout_sec.to_string(),
            "revision" => self.revision.to_string(),
            "ustate" => self.ustate.0.to_string(),
            "in_progress" => self.in_progress.to_string(),
            _ => return self.uservar(key).and_then(UserVar::display_value),
        })
    }

    /// Sets a fixed field (numbers in decimal; `ustate` also by name) or a string user
    /// variable, mirroring libebgenv's `ebg_env_set`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |reason: &str| EnvError::InvalidVariable {
            format: FORMAT,
            key: key.to_string(),
            reason: reason.into(),
        };
        match key {
            "kernelfile" => self.kernelfile = value.to_string(),
            "kernelparams" => self.kernelparams = value.to_string(),
            "watchdog_timeout_sec" => {
                self.watchdog_timeout_sec = value.trim().parse().map_err(|_| bad("not a u16"))?
            }
            "revision" => self.revision = value.trim().parse().map_err(|_| bad("not a u32"))?,
            "ustate" => self.ustate = UState::parse(value).ok_or_else(|| bad("not a ustate"))?,
            "in_progress" => {
                self.in_progress = value.trim().parse().map_err(|_| bad("not a u8"))?
            }
            _ => {
                if key.is_empty() || key.contains('\0') || value.contains('\0') {
                    return Err(bad("empty key or NUL character"));
                }
                self.set_uservar(UserVar::string(key, value));
            }
        }
        // Check the strings fit now rather than at commit time.
        if key == "kernelfile" || key == "kernelparams" {
            let mut scratch = [0u8; 2 * ENV_STRING_LENGTH];
            encode_utf16_field(key, value, &mut scratch)?;
        }
        Ok(())
    }
}

/// Where one copy of the environment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvLocation {
    /// `BGENV.DAT` on a mounted config partition (mount it with `-o sync`). Written as
    /// temp file + fsync + rename + directory fsync.
    File(PathBuf),
    /// The struct at `offset` of a raw file or device. Written in place + fsync (a torn
    /// write there is caught by the CRC).
    Raw {
        /// File or device.
        path: PathBuf,
        /// Byte offset of the struct.
        offset: u64,
    },
}

impl EnvLocation {
    /// `dir/BGENV.DAT`.
    pub fn in_dir(dir: impl AsRef<Path>) -> EnvLocation {
        EnvLocation::File(dir.as_ref().join(ENV_FILE_NAME))
    }

    /// The file or device path.
    pub fn path(&self) -> &Path {
        match self {
            EnvLocation::File(p) | EnvLocation::Raw { path: p, .. } => p,
        }
    }
}

/// State of one copy after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    /// Readable, right size, CRC and records valid.
    Valid(BgEnv),
    /// Present but unusable; the message says why (bad CRC, truncated, ...).
    Invalid(String),
    /// The file does not exist.
    Missing,
}

impl CopyState {
    /// The environment if valid.
    pub fn env(&self) -> Option<&BgEnv> {
        match self {
            CopyState::Valid(env) => Some(env),
            _ => None,
        }
    }
}

/// What the loader did in [`select_boot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootAction {
    /// The latest copy is in a normal state; booted as is.
    Normal,
    /// The latest copy has `in_progress = 1`; the second latest is booted instead.
    SkippedInProgress,
    /// The latest copy was INSTALLED: set to TESTING (written back) and booted.
    StartedTest,
    /// The latest copy was still TESTING (its test boot never confirmed): set to FAILED with
    /// revision 0 (written back); the second latest is booted.
    RolledBack,
    /// No copy is valid.
    NoValidConfig,
}

/// The loader's decision for one boot, see [`select_boot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDecision {
    /// What happened.
    pub action: BootAction,
    /// Index of the copy the loader takes kernel, arguments and watchdog from.
    pub boot_index: Option<usize>,
    /// That copy's content as the loader uses it (after its own changes). `None` when the
    /// chosen index is not a valid copy: the real loader would then use zeroed or corrupt
    /// data and fail to start a kernel.
    pub booted: Option<BgEnv>,
    /// The copy the loader rewrites (with a fresh CRC) before booting, and the new content.
    pub write_back: Option<(usize, BgEnv)>,
    /// Fewer than [`ENV_NUM_CONFIG_PARTS`] copies were present or some were invalid
    /// (`BG_CONFIG_PARTIALLY_CORRUPTED`; the loader still boots).
    pub partially_corrupted: bool,
}

/// Pure model of efibootguard's `load_config` (0.13 to 0.22 behave the same):
///
/// 1. latest = valid copy with the highest revision > 0 (first index wins ties); the
///    second latest likewise (both default to index 0 when absent, as in the loader).
/// 2. latest `in_progress == 1` → boot second latest.
/// 3. latest `ustate == TESTING` → write latest back with `ustate = FAILED`,
///    `revision = 0`; boot second latest.
/// 4. latest `ustate == INSTALLED` → write latest back with `ustate = TESTING`; boot latest.
/// 5. otherwise boot latest.
///
/// The loader writes back only when all [`ENV_NUM_CONFIG_PARTS`] copies are present.
/// Deviation: with no valid copy at all the real loader boots whatever bytes copy 0 holds;
/// this model reports [`BootAction::NoValidConfig`] instead.
pub fn select_boot(copies: &[CopyState]) -> BootDecision {
    let partially_corrupted = copies.len() < ENV_NUM_CONFIG_PARTS
        || copies.iter().any(|c| !matches!(c, CopyState::Valid(_)));
    let all_present = copies.len() >= ENV_NUM_CONFIG_PARTS
        && !copies.iter().any(|c| matches!(c, CopyState::Missing));
    if !copies.iter().any(|c| c.env().is_some()) {
        return BootDecision {
            action: BootAction::NoValidConfig,
            boot_index: None,
            booted: None,
            write_back: None,
            partially_corrupted,
        };
    }
    let (mut latest_rev, mut latest_idx, mut pre_rev, mut pre_idx) = (0u32, 0usize, 0u32, 0usize);
    for (i, copy) in copies.iter().enumerate() {
        if let Some(env) = copy.env() {
            if env.revision > latest_rev {
                pre_rev = latest_rev;
                pre_idx = latest_idx;
                latest_rev = env.revision;
                latest_idx = i;
            } else if env.revision > pre_rev {
                pre_rev = env.revision;
                pre_idx = i;
            }
        }
    }
    // The loader's in-memory array: valid copies as read, others unusable.
    let mut envs: Vec<Option<BgEnv>> = copies.iter().map(|c| c.env().cloned()).collect();
    let latest = envs.get(latest_idx).cloned().flatten();
    let (action, boot_idx, write_back) = match latest {
        None => (BootAction::Normal, latest_idx, None),
        Some(l) if l.in_progress == 1 => (BootAction::SkippedInProgress, pre_idx, None),
        Some(mut l) if l.ustate == UState::TESTING => {
            l.ustate = UState::FAILED;
            l.revision = REVISION_FAILED;
            if let Some(slot) = envs.get_mut(latest_idx) {
                *slot = Some(l.clone());
            }
            (
                BootAction::RolledBack,
                pre_idx,
                all_present.then_some((latest_idx, l)),
            )
        }
        Some(mut l) if l.ustate == UState::INSTALLED => {
            l.ustate = UState::TESTING;
            if let Some(slot) = envs.get_mut(latest_idx) {
                *slot = Some(l.clone());
            }
            (
                BootAction::StartedTest,
                latest_idx,
                all_present.then_some((latest_idx, l)),
            )
        }
        Some(_) => (BootAction::Normal, latest_idx, None),
    };
    BootDecision {
        action,
        boot_index: Some(boot_idx),
        booted: envs.get(boot_idx).cloned().flatten(),
        write_back,
        partially_corrupted,
    }
}

/// All copies of a system's EBG environment, with power-safe update operations.
///
/// Update protocol (what SWUpdate's EBG backend does through libebgenv, done natively):
/// 1. [`BgEnvSet::begin_update`]: the oldest copy (never the current one) becomes a clone of
///    the current one with `revision = latest + 1` and `in_progress = 1`, written durably.
///    The loader ignores it, so a crash while the image is written boots the old config.
/// 2. Change the in-flight copy with [`BgEnvSet::pending_mut`] (kernel, arguments, ...).
/// 3. [`BgEnvSet::finalize_update`]: `in_progress = 0`, `ustate = INSTALLED`, written
///    durably. The next boot tests it ([`select_boot`]).
/// 4. After a healthy boot, [`BgEnvSet::confirm`] (TESTING → OK, clears FAILED markers).
///
/// Every write replaces exactly one copy and is durable before the call returns; the copy
/// the system booted from is never touched by steps 1–3.
#[derive(Debug)]
pub struct BgEnvSet {
    storage: SharedStorage,
    locations: Vec<EnvLocation>,
    copies: Vec<CopyState>,
    pending: Option<(usize, BgEnv)>,
    staged: Option<BgEnv>,
}

impl BgEnvSet {
    /// Loads every copy. Invalid, unreadable (I/O error) or missing copies are recorded as
    /// [`CopyState::Invalid`] / [`CopyState::Missing`], not fatal.
    pub fn open(storage: SharedStorage, locations: Vec<EnvLocation>) -> Result<BgEnvSet> {
        let mut set = BgEnvSet {
            storage,
            locations,
            copies: Vec::new(),
            pending: None,
            staged: None,
        };
        set.reload()?;
        Ok(set)
    }

    /// Loads `dir/BGENV.DAT` for each directory (mounted config partitions) from the real
    /// filesystem.
    pub fn open_dirs<P: AsRef<Path>>(dirs: &[P]) -> Result<BgEnvSet> {
        Self::open(
            FsStorage::shared(),
            dirs.iter().map(EnvLocation::in_dir).collect(),
        )
    }

    /// Creates a fresh environment on every location (revision = index + 1 for copy 0..N,
    /// so the last copy is current), e.g. to provision an image. Each copy gets `env`'s
    /// content with its own revision.
    pub fn provision(
        storage: SharedStorage,
        locations: Vec<EnvLocation>,
        env: &BgEnv,
    ) -> Result<BgEnvSet> {
        for (i, loc) in locations.iter().enumerate() {
            let mut copy = env.clone();
            copy.revision = u32::try_from(i + 1).unwrap_or(u32::MAX);
            write_location(storage.as_ref(), loc, &copy.to_bytes()?)?;
        }
        Self::open(storage, locations)
    }

    /// Re-reads every copy from storage (drops a pending update and staged changes).
    pub fn reload(&mut self) -> Result<()> {
        self.pending = None;
        self.staged = None;
        self.copies = self
            .locations
            .iter()
            .map(|loc| read_location(self.storage.as_ref(), loc))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// The copies as loaded, in location order.
    pub fn copies(&self) -> &[CopyState] {
        &self.copies
    }

    /// The locations, in order.
    pub fn locations(&self) -> &[EnvLocation] {
        &self.locations
    }

    /// The storage backend.
    pub fn storage(&self) -> &SharedStorage {
        &self.storage
    }

    /// Index of the current copy: the valid one with the highest revision (first index
    /// wins ties); `None` if no copy is valid.
    pub fn latest_index(&self) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, c) in self.copies.iter().enumerate() {
            if let Some(env) = c.env() {
                if best.is_none_or(|(_, rev)| env.revision > rev) {
                    best = Some((i, env.revision));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// The current copy.
    pub fn latest(&self) -> Option<&BgEnv> {
        self.latest_index()
            .and_then(|i| self.copies.get(i))
            .and_then(CopyState::env)
    }

    /// Index of the copy an update overwrites: a missing or invalid copy first, else the
    /// valid one with the lowest revision; never the current copy (unless it is the only
    /// location).
    pub fn oldest_index(&self) -> usize {
        let latest = self.latest_index();
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in self.copies.iter().enumerate() {
            if Some(i) == latest {
                continue;
            }
            let rank = c.env().map_or(-1, |e| i64::from(e.revision));
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i).or(latest).unwrap_or(0)
    }

    /// The system-wide update state as libebgenv reports it: FAILED if some valid copy has
    /// `revision == 0 && ustate == FAILED` (a rollback happened), else the current copy's
    /// state (OK if none).
    pub fn global_ustate(&self) -> UState {
        let rolled_back = self
            .copies
            .iter()
            .filter_map(CopyState::env)
            .any(|e| e.revision == REVISION_FAILED && e.ustate == UState::FAILED);
        if rolled_back {
            UState::FAILED
        } else {
            self.latest().map_or(UState::OK, |e| e.ustate)
        }
    }

    /// Durably replaces copy `index` by `env` and updates the in-memory state.
    pub fn write_copy(&mut self, index: usize, env: &BgEnv) -> Result<()> {
        let loc = self
            .locations
            .get(index)
            .ok_or_else(|| EnvError::State(format!("no environment copy {index}")))?;
        let bytes = env.to_bytes()?;
        write_location(self.storage.as_ref(), loc, &bytes)?;
        if let Some(slot) = self.copies.get_mut(index) {
            *slot = CopyState::Valid(env.clone());
        }
        Ok(())
    }

    /// Index of the copy the running system was booted from, per the loader's rule: the
    /// current copy, unless it is in flight or INSTALLED (not booted yet), in which case the
    /// second latest valid copy.
    pub fn running_index(&self) -> Option<usize> {
        let latest_idx = self.latest_index()?;
        let latest = self.copies.get(latest_idx)?.env()?;
        if latest.in_progress == 1 || latest.ustate == UState::INSTALLED {
            self.second_latest_index(latest_idx).or(Some(latest_idx))
        } else {
            Some(latest_idx)
        }
    }

    fn second_latest_index(&self, latest_idx: usize) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, c) in self.copies.iter().enumerate() {
            if i == latest_idx {
                continue;
            }
            if let Some(env) = c.env() {
                if best.is_none_or(|(_, rev)| env.revision > rev) {
                    best = Some((i, env.revision));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// Starts an update transaction (see the type docs); returns the in-flight copy's index.
    ///
    /// The copy the system runs from ([`BgEnvSet::running_index`]) is never overwritten: if
    /// the current copy is in flight (an earlier update crashed) or INSTALLED but not booted
    /// yet (an earlier update was never booted), that copy is replaced, starting again from
    /// the running configuration. While a test boot is unconfirmed (current copy TESTING)
    /// the other copy is the only fallback, so this fails with [`EnvError::State`]: confirm
    /// or reboot first.
    pub fn begin_update(&mut self) -> Result<usize> {
        let latest_idx = self.latest_index();
        let latest = self.latest().cloned();
        let (target, base) = match (&latest, latest_idx) {
            (Some(l), Some(_)) if l.ustate == UState::TESTING && l.in_progress == 0 => {
                return Err(EnvError::State(
                    "the running configuration is still TESTING: confirm it (or reboot to roll back) before the next update".into(),
                ))
            }
            (Some(l), Some(li)) if l.in_progress == 1 || l.ustate == UState::INSTALLED => {
                let base = self
                    .second_latest_index(li)
                    .and_then(|i| self.copies.get(i))
                    .and_then(CopyState::env)
                    .cloned()
                    .unwrap_or_else(BgEnv::new);
                (li, base)
            }
            (Some(l), _) => (self.oldest_index(), l.clone()),
            (None, _) => (self.oldest_index(), BgEnv::new()),
        };
        let mut env = base;
        env.revision = latest.map_or(1, |l| l.revision.saturating_add(1));
        env.in_progress = 1;
        env.ustate = UState::OK;
        self.write_copy(target, &env)?;
        self.pending = Some((target, env));
        Ok(target)
    }

    /// The in-flight copy of an open update transaction.
    pub fn pending_mut(&mut self) -> Option<&mut BgEnv> {
        self.pending.as_mut().map(|(_, env)| env)
    }

    /// Index of the in-flight copy of an open update transaction.
    pub fn pending_index(&self) -> Option<usize> {
        self.pending.as_ref().map(|(i, _)| *i)
    }

    /// Ends the update transaction: `in_progress = 0`, `ustate = INSTALLED`, written durably.
    /// From now on the loader test-boots this copy.
    pub fn finalize_update(&mut self) -> Result<()> {
        let (index, mut env) = self
            .pending
            .take()
            .ok_or_else(|| EnvError::State("finalize_update without begin_update".into()))?;
        env.in_progress = 0;
        env.ustate = UState::INSTALLED;
        if let Err(e) = self.write_copy(index, &env) {
            self.pending = Some((index, env));
            return Err(e);
        }
        Ok(())
    }

    /// Abandons the update transaction: the in-flight copy is written with
    /// `in_progress = 0`, `revision = 0`, `ustate = FAILED`, so the loader never boots it
    /// and [`BgEnvSet::global_ustate`] reports FAILED until the next confirm.
    pub fn abort_update(&mut self) -> Result<()> {
        let (index, mut env) = self
            .pending
            .take()
            .ok_or_else(|| EnvError::State("abort_update without begin_update".into()))?;
        env.in_progress = 0;
        env.revision = REVISION_FAILED;
        env.ustate = UState::FAILED;
        self.write_copy(index, &env)
    }

    /// Marks the running configuration good (`bg_setenv -c` / libebgenv
    /// `setglobalstate(OK)`): the current copy and every other valid copy whose ustate is
    /// not OK get `ustate = OK`. Each changed copy is rewritten on its own, the current one
    /// first: while it is still TESTING the other copy is the loader's fallback and must not
    /// be put at risk. Idempotent; returns whether anything was written.
    pub fn confirm(&mut self) -> Result<bool> {
        let latest = self.latest_index();
        let mut order: Vec<usize> = latest.into_iter().collect();
        order.extend((0..self.copies.len()).filter(|&i| Some(i) != latest));
        let mut changed = false;
        for i in order {
            let Some(mut env) = self.copies.get(i).and_then(CopyState::env).cloned() else {
                continue;
            };
            if env.ustate != UState::OK {
                env.ustate = UState::OK;
                self.write_copy(i, &env)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Rewrites every invalid or missing copy from the running configuration, never touching a
    /// valid copy: only when no update is in flight and the current copy is OK (not in
    /// progress, INSTALLED, TESTING or FAILED), so the repaired copy is a plain fallback to the
    /// same slot. Its revision is one below the current copy's (the same when that is 1: the
    /// content is identical, so the loader's tie rule picks the same kernel). Returns the
    /// indices written.
    pub fn repair(&mut self) -> Result<Vec<usize>> {
        if self.pending.is_some() {
            return Ok(Vec::new());
        }
        let Some(latest) = self.latest().cloned() else {
            return Ok(Vec::new());
        };
        if latest.in_progress != 0 || latest.ustate != UState::OK || latest.revision == 0 {
            return Ok(Vec::new());
        }
        let broken: Vec<usize> = (0..self.copies.len())
            .filter(|&i| !matches!(self.copies[i], CopyState::Valid(_)))
            .collect();
        let mut copy = latest.clone();
        copy.revision = latest.revision.saturating_sub(1).max(1);
        for &i in &broken {
            self.write_copy(i, &copy)?;
        }
        Ok(broken)
    }

    /// Runs the loader model ([`select_boot`]) on the loaded copies and performs its
    /// write-back on storage, exactly as the EFI loader would at power-on. For simulators.
    pub fn simulate_boot(&mut self) -> Result<BootDecision> {
        let decision = select_boot(&self.copies);
        if let Some((index, env)) = &decision.write_back {
            // The loader writes the file in place, not via rename.
            let loc = self.locations.get(*index).cloned();
            if let Some(loc) = loc {
                let bytes = env.to_bytes()?;
                let (path, offset) = match &loc {
                    EnvLocation::File(p) => (p.clone(), 0),
                    EnvLocation::Raw { path, offset } => (path.clone(), *offset),
                };
                write_in_place(self.storage.as_ref(), &path, offset, &bytes)?;
                if let Some(slot) = self.copies.get_mut(*index) {
                    *slot = CopyState::Valid(env.clone());
                }
            }
        }
        Ok(decision)
    }
}

fn read_location(storage: &dyn crate::storage::Storage, loc: &EnvLocation) -> Result<CopyState> {
    let read = match loc {
        EnvLocation::File(path) => storage.read(path),
        EnvLocation::Raw { path, offset } => storage.read_at(path, *offset, ENV_SIZE),
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CopyState::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(CopyState::Invalid(format!(
                "{}: truncated: {e}",
                loc.path().display()
            )))
        }
        // An unreadable copy (EIO from a bad sector, a flaky card) is one bad copy among two,
        // as the loader treats it: efibootguard's probe_config_file/read_config skips a
        // partition whose BGENV.DAT cannot be read and boots from the others
        // (env/env_api_fat.c, "Could not read ..."). Recorded, not fatal.
        Err(e) => {
            return Ok(CopyState::Invalid(format!(
                "{}: read failed: {e}",
                loc.path().display()
            )))
        }
    };
    Ok(match BgEnv::parse(&bytes) {
        Ok(env) => CopyState::Valid(env),
        Err(e) => CopyState::Invalid(format!("{}: {e}", loc.path().display())),
    })
}

fn write_location(
    storage: &dyn crate::storage::Storage,
    loc: &EnvLocation,
    bytes: &[u8],
) -> Result<()> {
    match loc {
        EnvLocation::File(path) => replace_file(storage, path, bytes),
        EnvLocation::Raw { path, offset } => write_in_place(storage, path, *offset, bytes),
    }
}

/// [`BootEnv`] over the EBG copies. Keys are libebgenv's: `kernelfile`, `kernelparams`,
/// `watchdog_timeout_sec`, `revision`, `ustate`, `in_progress`, else user variables.
///
/// * With an update transaction open ([`BgEnvSet::begin_update`]), `get`/`set`/`unset` act on
///   the in-flight copy and [`BootEnv::commit`] finalizes it ([`BgEnvSet::finalize_update`]).
/// * Otherwise they act on a staged clone of the current copy and `commit` rewrites the
///   current copy with the same revision (libebgenv's behaviour outside a transaction).
///   On [`EnvLocation::File`] that is atomic; on [`EnvLocation::Raw`] a torn write is
///   caught by the CRC and the loader falls back to the other copy. `get("ustate")` returns
///   [`BgEnvSet::global_ustate`].
impl BootEnv for BgEnvSet {
    fn get(&self, key: &str) -> Option<String> {
        if let Some((_, env)) = &self.pending {
            return env.get(key);
        }
        if let Some(env) = &self.staged {
            return env.get(key);
        }
        if key == "ustate" {
            return Some(self.global_ustate().0.to_string());
        }
        self.latest().and_then(|e| e.get(key))
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some((_, env)) = &mut self.pending {
            return env.set(key, value);
        }
        let base = self.latest().cloned().unwrap_or_else(BgEnv::new);
        self.staged.get_or_insert(base).set(key, value)
    }

    fn unset(&mut self, key: &str) -> Result<()> {
        if let Some((_, env)) = &mut self.pending {
            env.remove_uservar(key);
            return Ok(());
        }
        let base = self.latest().cloned().unwrap_or_else(BgEnv::new);
        self.staged.get_or_insert(base).remove_uservar(key);
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if self.pending.is_some() {
            return self.finalize_update();
        }
        let Some(mut env) = self.staged.take() else {
            return Ok(());
        };
        let target = match self.latest_index() {
            Some(i) => i,
            None => {
                env.revision = 1;
                self.oldest_index()
            }
        };
        if let Err(e) = self.write_copy(target, &env) {
            self.staged = Some(env);
            return Err(e);
        }
        Ok(())
    }

    fn vars(&self) -> Vec<(String, String)> {
        let env = match (&self.pending, &self.staged) {
            (Some((_, env)), _) | (None, Some(env)) => Some(env),
            _ => self.latest(),
        };
        let Some(env) = env else { return Vec::new() };
        let mut out: Vec<(String, String)> = [
            "kernelfile",
            "kernelparams",
            "watchdog_timeout_sec",
            "revision",
            "ustate",
            "in_progress",
        ]
        .iter()
        .filter_map(|k| env.get(k).map(|v| (k.to_string(), v)))
        .collect();
        out.extend(
            env.uservars
                .iter()
                .filter(|v| v.type_flags & user_type::DELETED == 0)
                .filter_map(|v| v.display_value().map(|d| (v.key.clone(), d))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut env = BgEnv::new();
        env.kernelfile = "C:BOOT0:vmlinuz".into();
        env.kernelparams = "root=/dev/sda4 ro".into();
        env.revision = 7;
        env.ustate = UState::INSTALLED;
        env.set_uservar(UserVar::string("foo", "bar"));
        let bytes = env.to_bytes().unwrap();
        assert_eq!(bytes.len(), ENV_SIZE);
        assert_eq!(BgEnv::parse(&bytes).unwrap(), env);
        // The record layout of the design notes' example.
        assert_eq!(
            &bytes[OFFSET_USERDATA..OFFSET_USERDATA + 16],
            b"foo\0\x10\0\0\0\x20\0\0\0\0\0\0\0"
        );
    }

    fn valid(rev: u32, ustate: UState, in_progress: u8) -> CopyState {
        CopyState::Valid(BgEnv {
            revision: rev,
            ustate,
            in_progress,
            kernelfile: format!("k{rev}"),
            ..BgEnv::new()
        })
    }

    #[test]
    fn loader_rules() {
        let d = select_boot(&[valid(1, UState::OK, 0), valid(2, UState::INSTALLED, 0)]);
        assert_eq!((d.action, d.boot_index), (BootAction::StartedTest, Some(1)));
        assert_eq!(d.write_back.unwrap().1.ustate, UState::TESTING);

        let d = select_boot(&[valid(1, UState::OK, 0), valid(2, UState::TESTING, 0)]);
        assert_eq!((d.action, d.boot_index), (BootAction::RolledBack, Some(0)));
        let (i, wb) = d.write_back.unwrap();
        assert_eq!((i, wb.revision, wb.ustate), (1, 0, UState::FAILED));

        let d = select_boot(&[valid(3, UState::OK, 1), valid(2, UState::OK, 0)]);
        assert_eq!(
            (d.action, d.boot_index),
            (BootAction::SkippedInProgress, Some(1))
        );

        let d = select_boot(&[CopyState::Missing, valid(2, UState::INSTALLED, 0)]);
        assert_eq!(d.boot_index, Some(1));
        assert!(d.write_back.is_none() && d.partially_corrupted);
    }
}
