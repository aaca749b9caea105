//! Device simulator for tests: file-backed A/B slots on a simulated disk
//! (`keel_bootenv::storage::SimStorage`, with a volatile page cache and power-cut injection at
//! every write/fsync/rename boundary), and bootloader models that apply EFI Boot Guard's and
//! U-Boot's (bootcount) selection rules to the environment files, including the loader's own
//! environment writes.
//!
//! A [`SimDevice`] holds the disk; [`SimDevice::agent`] gives a `keel_agent::Agent` running on
//! it (as after a fresh start of the agent process); [`SimDevice::boot`] is a power-on: the
//! loader model picks a slot, writes its env changes, and "starts the kernel" by writing
//! `/proc/cmdline` and a new boot id.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_agent::config::{BootloaderConfig, Config, Detect, SlotConfig, Slots};
use keel_agent::{Agent, AgentError, Environment, SlotId};
use keel_bootenv::ebg::{BgEnv, BgEnvSet, BootAction, EnvLocation, UState};
use keel_bootenv::grub::{backup_path, names_bootable_slot, GrubEnv, GrubEnvFile};
use keel_bootenv::storage::{write_in_place, SharedStorage, SimStorage, Storage};
use keel_bootenv::uboot::{FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::BootEnv;

pub use keel_bootenv::storage::CutMode;

/// Which bootloader the simulated device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// EFI Boot Guard with two config partitions (BOOT0 for slot A, BOOT1 for slot B).
    Ebg,
    /// U-Boot with a redundant environment and `bootlimit` boot counting.
    Uboot,
    /// GRUB with keel's documented grub.cfg (docs/bootenv.md): RAUC's variables (`ORDER`,
    /// `<slot>_OK`, `<slot>_TRY`), grubenv with its second copy `grubenv.keel`, `save_env` in
    /// place, a rescue entry when neither copy names a bootable slot.
    Grub,
}

/// Simulated kernel command line, rewritten by every [`SimDevice::boot`] (carries
/// `keel.slot=<slot>`, from which the agent detects the booted slot).
pub const CMDLINE: &str = "/proc/cmdline";
/// Simulated boot id, `sim-boot-<n>` after the n-th boot: tells the agent a reboot happened.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The two EFI Boot Guard environment copies (BOOT0 names slot A, BOOT1 slot B).
pub const EBG_ENV: [&str; 2] = ["/boot/BOOT0/BGENV.DAT", "/boot/BOOT1/BGENV.DAT"];
/// The `fw_env.config` describing the redundant U-Boot environment.
pub const UBOOT_CONFIG: &str = "/etc/fw_env.config";
/// The two copies of the redundant U-Boot environment.
pub const UBOOT_ENV: [&str; 2] = ["/boot/uboot.env", "/boot/uboot-redund.env"];
/// Size of each U-Boot environment copy in bytes (16 KiB).
pub const UBOOT_ENV_SIZE: usize = 0x4000;
/// The GRUB environment block.
pub const GRUBENV: &str = "/boot/efi/EFI/BOOT/grubenv";
/// The agent's state directory on the simulated disk.
pub const STATE_DIR: &str = "/var/lib/keel";

/// What to build.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// The bootloader model, which decides how the environment is set up and how a boot picks
    /// a slot.
    pub loader: Loader,
    /// Target names and their slot size (e.g. rootfs 256 KiB, kernel 64 KiB).
    pub targets: Vec<(String, u64)>,
    /// The factory image of slot A per target (shorter than the slot: zero padded).
    pub factory: BTreeMap<String, Vec<u8>>,
    /// PEM of the trusted signer (a real file: the agent reads it with std::fs).
    pub trusted_certs: PathBuf,
    /// `swupdate -K` key file for encrypted images (a real file, like `trusted_certs`).
    pub aes_key: Option<PathBuf>,
    /// Hardware revision the agent reports and checks against `hardware-compatibility`;
    /// `None`: no check.
    pub hardware_revision: Option<String>,
    /// Where the agent finds the booted slot.
    pub detect: Detect,
}

/// Errors of building or booting a simulated device.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The loader model found no slot to boot (no valid EBG config, a `keel_slot` value that
    /// names no slot, no GRUB slot with `<slot>_OK=1`); carries the environment state.
    #[error("the bootloader found no bootable slot: {0}")]
    NoBootableSlot(String),
    /// Reading or writing a bootloader environment failed (e.g. both copies corrupt).
    #[error("bootloader environment: {0}")]
    Env(#[from] keel_bootenv::EnvError),
    /// Starting the agent failed.
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    /// The loader booted its rescue entry, not a slot (GRUB: neither grubenv nor grubenv.keel
    /// is readable and names a bootable slot); carries why.
    #[error("the bootloader started its rescue entry, not a slot: {0}")]
    Rescue(String),
}

/// One power-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRecord {
    /// The slot the loader started.
    pub slot: SlotId,
    /// What the loader did: EBG `Normal`/`StartedTest`/`RolledBack`/`SkippedInProgress`;
    /// U-Boot `bootcmd`/`bootcmd (trial n)`/`altbootcmd`; GRUB `boot`/`reset tries`.
    pub action: String,
}

/// A simulated device: slots, bootloader environment and agent state on one [`SimStorage`]
/// disk. See the crate documentation.
pub struct SimDevice {
    /// The simulated disk: slot devices ([`slot_path`]), environment files, agent state.
    pub storage: Arc<SimStorage>,
    /// What the device was built from.
    pub spec: DeviceSpec,
    /// The agent configuration matching the device (slots, bootloader, state directory), used
    /// by [`SimDevice::agent`].
    pub config: Config,
    boots: u64,
    /// Every boot so far, in order.
    pub history: Vec<BootRecord>,
    /// EFI Boot Guard: the order in which the firmware enumerates the config partitions, as
    /// indices into [`EBG_ENV`] (default `[0, 1]`). The loader numbers the copies in this order
    /// (env_api_fat.c `load_config`: `env[i]` is the i-th config volume found), so it decides
    /// revision ties and the default `pre_latest` index 0.
    pub ebg_volume_order: [usize; 2],
}

/// Device path of `target` in `slot` on the simulated disk: `/dev/slot<A|B>-<target>`.
pub fn slot_path(slot: SlotId, target: &str) -> PathBuf {
    PathBuf::from(format!("/dev/slot{slot}-{target}"))
}

fn kernelfile(slot: SlotId) -> String {
    format!("C:BOOT{}:linux.efi", slot.index())
}

fn kernelparams(slot: SlotId) -> String {
    format!("console=ttyS0 root=/dev/slot{slot}-rootfs keel.slot={slot}")
}

impl SimDevice {
    /// A device fresh from the factory: slot A holds the factory image, is booted and
    /// confirmed; slot B is zeroed.
    pub fn new(spec: DeviceSpec) -> Result<SimDevice, SimError> {
        let storage = SimStorage::shared();
        for (target, size) in &spec.targets {
            let size = usize::try_from(*size).unwrap_or(0);
            let mut a = spec.factory.get(target).cloned().unwrap_or_default();
            a.resize(size.max(a.len()), 0);
            storage.insert_device(slot_path(SlotId::A, target), &a);
            storage.insert_device(slot_path(SlotId::B, target), &vec![0u8; size]);
        }
        let shared: SharedStorage = storage.clone();
        let bootloader = match spec.loader {
            Loader::Ebg => {
                // Copy 0 (slot A) is current and confirmed; copy 1 names slot B, older.
                let locations: Vec<EnvLocation> = EBG_ENV
                    .iter()
                    .map(|p| EnvLocation::File(PathBuf::from(p)))
                    .collect();
                for (slot, revision) in [(SlotId::A, 2), (SlotId::B, 1)] {
                    let env = BgEnv {
                        kernelfile: kernelfile(slot),
                        kernelparams: kernelparams(slot),
                        revision,
                        watchdog_timeout_sec: 30,
                        ..BgEnv::new()
                    };
                    let path = locations[slot.index()].path().to_path_buf();
                    storage.insert_file(path, &env.to_bytes()?);
                }
                BootloaderConfig::Ebg {
                    env: EBG_ENV.map(PathBuf::from),
                    watchdog_sec: 60,
                }
            }
            Loader::Uboot => {
                let config =
                    FwEnvConfig::redundant((UBOOT_ENV[0], 0), (UBOOT_ENV[1], 0), UBOOT_ENV_SIZE);
                storage.insert_file(UBOOT_CONFIG, config.to_config_string().as_bytes());
                for path in UBOOT_ENV {
                    storage.insert_file(path, &vec![0u8; UBOOT_ENV_SIZE]);
                }
                let mut vars = Vars::new();
                for (k, v) in [
                    ("keel_slot", "A"),
                    ("upgrade_available", "0"),
                    ("bootcount", "0"),
                    ("bootlimit", "1"),
                    (
                        "altbootcmd",
                        "if test ${keel_slot} = A; then setenv keel_slot B; else setenv keel_slot A; fi; setenv upgrade_available 0; setenv ustate 3; saveenv; run bootcmd",
                    ),
                    ("bootcmd", "run keel_boot_${keel_slot}"),
                ] {
                    vars.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
                }
                UbootEnv::provision(shared.clone(), config, &vars)?;
                BootloaderConfig::Uboot {
                    fw_env_config: PathBuf::from(UBOOT_CONFIG),
                    slot_var: "keel_slot".into(),
                    slot_values: ["A".into(), "B".into()],
                    bootlimit: 1,
                }
            }
            Loader::Grub => {
                let mut env = GrubEnvFile::open_redundant(shared.clone(), GRUBENV)?;
                for (k, v) in [
                    ("ORDER", "A B"),
                    ("A_OK", "1"),
                    ("A_TRY", "0"),
                    ("B_OK", "0"),
                    ("B_TRY", "0"),
                ] {
                    env.set(k, v)?;
                }
                env.commit()?;
                BootloaderConfig::Grub {
                    grubenv: PathBuf::from(GRUBENV),
                }
            }
        };
        let slot_config = |slot: SlotId| SlotConfig {
            targets: spec
                .targets
                .iter()
                .map(|(t, _)| (t.clone(), slot_path(slot, t)))
                .collect(),
            cmdline_token: None,
            selection: None,
            kernelfile: Some(kernelfile(slot)),
            kernelparams: Some(kernelparams(slot)),
        };
        let config = Config {
            state_dir: PathBuf::from(STATE_DIR),
            trusted_certs: spec.trusted_certs.clone(),
            aes_key: spec.aes_key.clone(),
            hardware_revision: spec.hardware_revision.clone(),
            health_check: None,
            reboot_command: None,
            cmdline_path: PathBuf::from(CMDLINE),
            boot_id_path: PathBuf::from(BOOT_ID),
            detect: spec.detect,
            bootloader,
            slots: Slots {
                a: slot_config(SlotId::A),
                b: slot_config(SlotId::B),
            },
            ddi: None,
            tuf: None,
            tls: Default::default(),
            factory_image_sizes: Default::default(),
            max_interrupted_attempts: keel_agent::config::DEFAULT_MAX_INTERRUPTED_ATTEMPTS,
            verify_after_write: false,
        };
        let mut device = SimDevice {
            storage,
            spec,
            config,
            boots: 0,
            history: Vec::new(),
            ebg_volume_order: [0, 1],
        };
        device.boot()?;
        Ok(device)
    }

    /// An independent copy of this device (its disk forked with `SimStorage::fork`, boot
    /// count and history): a sweep prepares a state once and forks it for every cut.
    pub fn fork(&self) -> SimDevice {
        SimDevice {
            storage: Arc::new(self.storage.fork()),
            spec: self.spec.clone(),
            config: self.config.clone(),
            boots: self.boots,
            history: self.history.clone(),
            ebg_volume_order: self.ebg_volume_order,
        }
    }

    /// The agent as started after this boot (fresh process, reading everything from disk).
    pub fn agent(&self) -> Result<Agent, AgentError> {
        Agent::new(
            self.config.clone(),
            self.storage.clone(),
            Environment::Storage,
        )
    }

    /// Power-on: the loader model chooses a slot and performs its own env writes; the kernel
    /// start is modelled by a new `/proc/cmdline` and boot id.
    pub fn boot(&mut self) -> Result<BootRecord, SimError> {
        let (slot, action, cmdline) = match self.spec.loader {
            Loader::Ebg => self.boot_ebg()?,
            Loader::Uboot => self.boot_uboot()?,
            Loader::Grub => self.boot_grub()?,
        };
        self.boots += 1;
        self.storage
            .insert_file(CMDLINE, format!("{cmdline}\n").as_bytes());
        self.storage
            .insert_file(BOOT_ID, format!("sim-boot-{}\n", self.boots).as_bytes());
        let record = BootRecord { slot, action };
        self.history.push(record.clone());
        Ok(record)
    }

    fn boot_ebg(&mut self) -> Result<(SlotId, String, String), SimError> {
        let locations = self
            .ebg_volume_order
            .iter()
            .filter_map(|&i| EBG_ENV.get(i))
            .map(|p| EnvLocation::File(PathBuf::from(p)))
            .collect();
        let mut set = BgEnvSet::open(self.storage.clone(), locations)?;
        let decision = set.simulate_boot()?;
        let env = match (decision.action, decision.booted) {
            (BootAction::NoValidConfig, _) | (_, None) => {
                return Err(SimError::NoBootableSlot(format!(
                    "EFI Boot Guard: {:?}, copies {:?}",
                    decision.action,
                    set.copies()
                        .iter()
                        .map(|c| c.env().map(|e| (e.revision, e.ustate.0, e.in_progress)))
                        .collect::<Vec<_>>()
                )))
            }
            (_, Some(env)) => env,
        };
        let slot = [SlotId::A, SlotId::B]
            .into_iter()
            .find(|s| kernelfile(*s).eq_ignore_ascii_case(&env.kernelfile))
            .ok_or_else(|| {
                SimError::NoBootableSlot(format!("kernelfile {:?} names no slot", env.kernelfile))
            })?;
        Ok((slot, format!("{:?}", decision.action), env.kernelparams))
    }

    fn boot_uboot(&mut self) -> Result<(SlotId, String, String), SimError> {
        let shared: SharedStorage = self.storage.clone();
        let config = FwEnvConfig::load(shared.as_ref(), Path::new(UBOOT_CONFIG))?;
        // U-Boot falls back to its built-in default environment when no copy is valid;
        // the default boots slot A.
        let mut env = match UbootEnv::open(shared.clone(), config.clone()) {
            Ok(env) => env,
            Err(keel_bootenv::EnvError::NoValidCopy { .. }) => {
                return Ok((
                    SlotId::A,
                    "default environment".into(),
                    "keel.slot=A".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let mut action = "bootcmd".to_string();
        // CONFIG_BOOTCOUNT_ENV: count only while an upgrade is on trial.
        if env.get("upgrade_available").as_deref() == Some("1") {
            let count = keel_agent::bootloader::parse_uboot_count(env.get("bootcount")) + 1;
            env.set("bootcount", &format!("{count:x}"))?;
            env.commit()?;
            // `bootlimit = env_get_ulong("bootlimit", 10, 0)`; altbootcmd only
            // `if (bootlimit && bootcount > bootlimit)` (common/autoboot.c): 0, unset or not a
            // number never falls back.
            let limit = env
                .get("bootlimit")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0);
            if limit != 0 && count > limit {
                // altbootcmd: switch slot, end the trial, record the failure, saveenv.
                let other = match env.get("keel_slot").as_deref() {
                    Some("A") => "B",
                    _ => "A",
                };
                env.set("keel_slot", other)?;
                env.set("upgrade_available", "0")?;
                env.set("ustate", "3")?;
                env.commit()?;
                action = "altbootcmd".into();
            } else {
                action = format!("bootcmd (trial {count})");
            }
        }
        let slot = match env.get("keel_slot").as_deref() {
            Some("B") => SlotId::B,
            Some("A") => SlotId::A,
            other => return Err(SimError::NoBootableSlot(format!("keel_slot={other:?}"))),
        };
        Ok((slot, action, format!("console=ttyS0 keel.slot={slot}")))
    }

    /// keel's documented grub.cfg (docs/bootenv.md, "grub.cfg"), step by step:
    ///
    /// 1. For grubenv, then grubenv.keel: defaults `ORDER="A B"`, `A_OK=0`, `B_OK=0`,
    ///    `A_TRY=0`, `B_TRY=0`, then `load_env -f <file>` (GRUB's reader: fails on an unreadable
    ///    block or a bad signature, stops at a broken line). The first file that loads and names
    ///    a slot of ORDER with `_OK=1` is used (`keel_env`); none: the rescue entry.
    /// 2. The first slot of ORDER with `_OK=1` and `_TRY=0` boots, `<slot>_TRY=1`.
    /// 3. None: every `_TRY` of an OK slot is reset to 0 (RAUC's "reset booted flags"), and the
    ///    first OK slot of ORDER boots with `<slot>_TRY=1` (RAUC's cfg boots its rescue entry
    ///    here once and the slot on the next boot; keel boots the slot at once).
    /// 4. `save_env -f $keel_env A_TRY B_TRY`: GRUB re-reads the block, sets the variables and
    ///    writes all of it back *in place* through the file's blocklist
    ///    (grub-core/commands/loadenv.c, `write_blocklists`), without fsync or rename; if the
    ///    block no longer reads, save_env fails and the boot goes on.
    ///
    /// Deviation: for a block GRUB reads only in part, GRUB edits the raw buffer; the model
    /// writes a clean block with the variables it read.
    fn boot_grub(&mut self) -> Result<(SlotId, String, String), SimError> {
        let candidates = [PathBuf::from(GRUBENV), backup_path(Path::new(GRUBENV))];
        let mut loaded = None;
        let mut why = Vec::new();
        for file in &candidates {
            match self
                .storage
                .read(file)
                .map(|b| GrubEnv::parse_like_grub(&b))
            {
                Ok(Ok((env, _))) if names_bootable_slot(&env) => {
                    loaded = Some((file.clone(), env));
                    break;
                }
                Ok(Ok(_)) => why.push(format!("{}: no bootable slot", file.display())),
                Ok(Err(e)) => why.push(format!("{}: {e}", file.display())),
                Err(e) => why.push(format!("{}: {e}", file.display())),
            }
        }
        let Some((file, env)) = loaded else {
            return Err(SimError::Rescue(why.join("; ")));
        };
        let var = |name: String| env.get_bytes(name.as_bytes()) == Some(b"1".as_slice());
        let order: Vec<SlotId> = String::from_utf8_lossy(env.get_bytes(b"ORDER").unwrap_or(b"A B"))
            .split_whitespace()
            .filter_map(SlotId::parse)
            .collect();
        // `[ "$A_TRY" = 0 ]`: only the value 0 (the default when absent) counts as untried.
        let mut tries = [SlotId::A, SlotId::B].map(|s| {
            env.get_bytes(format!("{s}_TRY").as_bytes())
                .is_some_and(|v| v != b"0")
        });
        let ok = [SlotId::A, SlotId::B].map(|s| var(format!("{s}_OK")));
        let mut action = "boot".to_string();
        let mut chosen = order
            .iter()
            .copied()
            .find(|s| ok[s.index()] && !tries[s.index()]);
        if chosen.is_none() {
            for s in [SlotId::A, SlotId::B] {
                if ok[s.index()] {
                    tries[s.index()] = false;
                }
            }
            action = "reset tries".into();
            chosen = order.iter().copied().find(|s| ok[s.index()]);
        }
        let slot = chosen.ok_or_else(|| {
            SimError::Rescue(format!("{}: no slot of ORDER is OK", file.display()))
        })?;
        tries[slot.index()] = true;
        self.grub_save_env(&file, &tries)?;
        if file != candidates[0] {
            action.push_str(" (grubenv.keel)");
        }
        Ok((slot, action, format!("console=ttyS0 keel.slot={slot}")))
    }

    /// GRUB's `save_env -f file A_TRY B_TRY`: re-read, set, write the whole block in place and
    /// nothing else (no fsync: the firmware's block I/O is write-through, modelled as the
    /// storage's write + sync pair of `write_in_place`). A block that no longer reads is
    /// left alone, as GRUB's save_env fails on it.
    fn grub_save_env(&self, file: &Path, tries: &[bool; 2]) -> Result<(), SimError> {
        let Ok(bytes) = self.storage.read(file) else {
            return Ok(());
        };
        let Ok((mut env, _)) = GrubEnv::parse_like_grub(&bytes) else {
            return Ok(());
        };
        for s in [SlotId::A, SlotId::B] {
            let value: &[u8] = if tries[s.index()] { b"1" } else { b"0" };
            env.set_bytes(format!("{s}_TRY").as_bytes(), value);
        }
        let Ok(block) = env.to_bytes() else {
            return Ok(()); // "environment block too small": nothing written
        };
        write_in_place(self.storage.as_ref(), file, 0, &block)?;
        Ok(())
    }

    /// A grubenv variable (from the copy the agent and the loader use).
    pub fn grub_var(&self, key: &str) -> Option<String> {
        GrubEnvFile::open_redundant(self.storage.clone(), GRUBENV)
            .ok()?
            .get(key)
    }

    /// Current content of a slot target.
    pub fn slot_contents(&self, slot: SlotId, target: &str) -> Vec<u8> {
        self.storage
            .contents(&slot_path(slot, target))
            .unwrap_or_default()
    }

    /// Run `f` with a power cut armed after `ops` more mutating storage operations. If the
    /// cut happened, the disk is power-cycled with `mode` and `true` returned; otherwise the
    /// cut is disarmed (no power loss).
    pub fn with_power_cut<T>(
        &mut self,
        ops: u64,
        mode: CutMode,
        f: impl FnOnce(&mut SimDevice) -> T,
    ) -> (T, bool) {
        self.storage.arm_power_cut(ops);
        let out = f(self);
        let cut = self.storage.is_dark();
        if cut {
            self.storage.power_cycle(mode);
        } else {
            self.storage.arm_power_cut(u64::MAX);
        }
        (out, cut)
    }

    /// The agent as started after this boot, on a disk that loses power as the agent writes
    /// `target` of `slot` at byte `offset` or beyond (that write and everything after it fail,
    /// as after [`SimDevice::with_power_cut`]): a cut at a chosen point of an image, wherever
    /// the install happens to be in its other bookkeeping. Then [`SimDevice::power_cycle_if_cut`].
    pub fn agent_cut_while_writing(
        &self,
        slot: SlotId,
        target: &str,
        offset: u64,
    ) -> Result<Agent, AgentError> {
        let tripwire = Arc::new(Tripwire {
            disk: self.storage.clone(),
            path: slot_path(slot, target),
            offset,
        });
        Agent::new(self.config.clone(), tripwire, Environment::Storage)
    }

    /// If the power was cut, power-cycle the disk with `mode` and return true.
    pub fn power_cycle_if_cut(&self, mode: CutMode) -> bool {
        let cut = self.storage.is_dark();
        if cut {
            self.storage.power_cycle(mode);
        }
        cut
    }

    /// Number of mutating storage operations `f` performs (no power cut).
    pub fn count_ops<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.storage.ops_done();
        let out = f();
        (out, self.storage.ops_done() - before)
    }

    /// The storage as the agent sees it.
    pub fn shared_storage(&self) -> SharedStorage {
        self.storage.clone()
    }

    /// EBG config copies (for assertions): (revision, ustate, in_progress, kernelfile).
    pub fn ebg_copies(&self) -> Vec<Option<(u32, UState, u8, String)>> {
        let locations = EBG_ENV
            .iter()
            .map(|p| EnvLocation::File(PathBuf::from(p)))
            .collect();
        match BgEnvSet::open(self.storage.clone(), locations) {
            Ok(set) => set
                .copies()
                .iter()
                .map(|c| {
                    c.env()
                        .map(|e| (e.revision, e.ustate, e.in_progress, e.kernelfile.clone()))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A U-Boot variable of the current environment.
    pub fn uboot_var(&self, key: &str) -> Option<String> {
        let shared: SharedStorage = self.storage.clone();
        let config = FwEnvConfig::load(shared.as_ref(), Path::new(UBOOT_CONFIG)).ok()?;
        UbootEnv::open(shared, config).ok()?.get(key)
    }

    /// Read a whole file from the simulated disk.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.storage.read(Path::new(path)).ok()
    }
}

/// The simulated disk, cutting the power when a write reaches `offset` of `path`.
#[derive(Debug)]
struct Tripwire {
    disk: Arc<SimStorage>,
    path: PathBuf,
    offset: u64,
}

impl Storage for Tripwire {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.disk.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.disk.read_at(path, offset, len)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.disk.write_file(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        if path == self.path && end > self.offset {
            // The power goes off before this write.
            self.disk.arm_power_cut(0);
        }
        self.disk.write_at(path, offset, data)
    }
    fn sync(&self, path: &Path) -> std::io::Result<()> {
        self.disk.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.disk.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.disk.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.disk.remove(path)
    }
    fn metadata(&self, path: &Path) -> std::io::Result<keel_bootenv::storage::FileInfo> {
        self.disk.metadata(path)
    }
}
