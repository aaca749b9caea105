//! The agent's TOML configuration: slots, bootloader backend, trust anchors, state directory.
//!
//! See docs/agent.md for a commented example.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One of the two A/B slots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
pub enum SlotId {
    /// The first slot (index 0): U-Boot `slot_values[0]`, GRUB `A_OK`/`A_TRY`.
    A,
    /// The second slot (index 1): U-Boot `slot_values[1]`, GRUB `B_OK`/`B_TRY`.
    B,
}

impl SlotId {
    /// The other slot of the pair: the install target when `self` is booted.
    pub fn other(self) -> SlotId {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }

    /// 0 for A, 1 for B: the index of the slot's EFI Boot Guard config copy and U-Boot slot value.
    pub fn index(self) -> usize {
        match self {
            SlotId::A => 0,
            SlotId::B => 1,
        }
    }

    /// Parses `A`/`B` (either case); `None` for anything else.
    pub fn parse(text: &str) -> Option<SlotId> {
        match text {
            "A" | "a" => Some(SlotId::A),
            "B" | "b" => Some(SlotId::B),
            _ => None,
        }
    }

    /// `"A"` or `"B"`, as written in the state file and reported to the server.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotId::A => "A",
            SlotId::B => "B",
        }
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema (unknown key, wrong type,
    /// missing required key).
    #[error("parsing config {path}: {message}")]
    Parse {
        /// The configuration file; empty when [`Config::parse`] was given text.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// The TOML parsed but violates a rule (slots with different targets, a path shared by both
    /// slots, equal `cmdline_token`s or U-Boot `slot_values`, ...); the text says which.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the agent's state file (`state.json`) and staged scripts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// PEM file with the certificate(s) trusted to sign sw-description (CMS).
    pub trusted_certs: PathBuf,
    /// `swupdate -K` style AES key file (`<hex key> <hex iv>`), needed for encrypted images.
    #[serde(default)]
    pub aes_key: Option<PathBuf>,
    /// This device's hardware revision, checked against sw-description `hardware-compatibility`.
    #[serde(default)]
    pub hardware_revision: Option<String>,
    /// Command run by `confirm` (and by `run` after a test boot) before marking the slot good;
    /// a non-zero exit keeps the slot in TESTING so the bootloader falls back on the next boot.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Command `run` executes after a successful install to boot the new slot.
    #[serde(default)]
    pub reboot_command: Option<String>,
    /// Where to read the kernel command line (for slot detection).
    #[serde(default = "default_cmdline")]
    pub cmdline_path: PathBuf,
    /// Where to read the boot id (tells "not rebooted yet" from "rebooted").
    #[serde(default = "default_boot_id")]
    pub boot_id_path: PathBuf,
    /// How the booted slot is found: `cmdline`, `bootenv`, or `auto` (cmdline, then bootenv).
    #[serde(default)]
    pub detect: Detect,
    /// `[bootloader]`: which environment to drive and where it lives (required).
    pub bootloader: BootloaderConfig,
    /// `[slots.A]` and `[slots.B]`: the targets of each slot (required).
    pub slots: Slots,
    /// hawkBit DDI client settings for `keel-agent run`.
    #[serde(default)]
    pub ddi: Option<DdiConfig>,
    /// TUF enforcement for DDI installs (docs/tuf.md).
    #[serde(default)]
    pub tuf: Option<crate::tuf::TufConfig>,
    /// `[tls]`: how HTTPS servers are trusted and how the device proves itself to them (DDI,
    /// `install URL`, packs).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Target name → size of the image flashed at the factory. For a booted target the state
    /// file has no record of (never written by the agent), `run` hashes that many bytes once,
    /// records the result and reports it, so the server can offer a delta for it.
    #[serde(default)]
    pub factory_image_sizes: BTreeMap<String, u64>,
    /// `run`: how many times an install of the same DDI action may be interrupted before
    /// activation (power loss, crash, kill) before the action is closed as failed. Until then the
    /// action stays open and is installed again.
    #[serde(default = "default_max_interrupted_attempts")]
    pub max_interrupted_attempts: u32,
    /// After each image is written and fsynced, drop its cached pages and read the written
    /// region back from the device, hashing it again; a mismatch fails the install before
    /// activation. For flash that acknowledges fsync before the data is really stored. Costs
    /// one read of every image (docs/benchmarks.md). Default off.
    #[serde(default)]
    pub verify_after_write: bool,
}

/// Default of `max_interrupted_attempts`.
pub const DEFAULT_MAX_INTERRUPTED_ATTEMPTS: u32 = 3;

fn default_max_interrupted_attempts() -> u32 {
    DEFAULT_MAX_INTERRUPTED_ATTEMPTS
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/keel")
}

fn default_boot_id() -> PathBuf {
    PathBuf::from("/proc/sys/kernel/random/boot_id")
}

fn default_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}

/// `detect`: how the booted slot is found (docs/agent.md, "Booted slot").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detect {
    /// Exactly one slot's `cmdline_token` in the command line, else the bootloader environment
    /// (default).
    #[default]
    Auto,
    /// Only the kernel command line.
    Cmdline,
    /// Only the bootloader environment (GRUB cannot answer; use `cmdline` or `auto` there).
    Bootenv,
}

/// `[slots.A]` and `[slots.B]`; [`Config::parse`] checks they name the same targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// `[slots.A]`.
    #[serde(rename = "A")]
    pub a: SlotConfig,
    /// `[slots.B]`.
    #[serde(rename = "B")]
    pub b: SlotConfig,
}

impl Slots {
    /// The configuration of slot `id`.
    pub fn get(&self, id: SlotId) -> &SlotConfig {
        match id {
            SlotId::A => &self.a,
            SlotId::B => &self.b,
        }
    }
}

/// One slot: the set of targets (rootfs, kernel/UKI, ...) that are booted together.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// Target name (as used in sw-description `device`) → block device or file.
    pub targets: BTreeMap<String, PathBuf>,
    /// A whitespace-separated token of the kernel command line that identifies this slot
    /// (e.g. `root=PARTUUID=...`); defaults to `keel.slot=A` / `keel.slot=B`.
    #[serde(default)]
    pub cmdline_token: Option<String>,
    /// SWUpdate-style selection (`-e stable,copy1`) used when this slot is the install target.
    #[serde(default)]
    pub selection: Option<String>,
    /// EFI Boot Guard: kernel file for this slot (`C:BOOT1:linux.efi`).
    #[serde(default)]
    pub kernelfile: Option<String>,
    /// EFI Boot Guard: kernel parameters for this slot.
    #[serde(default)]
    pub kernelparams: Option<String>,
}

impl SlotConfig {
    /// The kernel command-line token that is present only while slot `id` runs: `cmdline_token`,
    /// or `keel.slot=A` / `keel.slot=B` when unset.
    pub fn cmdline_token(&self, id: SlotId) -> String {
        self.cmdline_token
            .clone()
            .unwrap_or_else(|| format!("keel.slot={id}"))
    }
}

/// `[bootloader]`: the boot environment the agent drives; `type` selects the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BootloaderConfig {
    /// EFI Boot Guard: one BGENV.DAT per config partition; `env[0]` belongs to slot A, `env[1]` to B.
    Ebg {
        /// `env`: paths of the two `BGENV.DAT` files (required; mount the partitions `-o sync`).
        env: [PathBuf; 2],
        /// Watchdog timeout written into the new environment (seconds); 0 keeps the current one.
        #[serde(default)]
        watchdog_sec: u16,
    },
    /// U-Boot: environment located by a `fw_env.config` (one line, or two for redundant).
    Uboot {
        /// `fw_env_config`: default `/etc/fw_env.config`.
        #[serde(default = "default_fw_env_config")]
        fw_env_config: PathBuf,
        /// Variable naming the slot to boot (values `A`/`B`, see `slot_values`).
        #[serde(default = "default_uboot_slot_var")]
        slot_var: String,
        /// The values of `slot_var` for slot A and slot B.
        #[serde(default = "default_uboot_slot_values")]
        slot_values: [String; 2],
        /// `bootlimit` written on install (U-Boot falls back when bootcount > bootlimit).
        #[serde(default = "default_bootlimit")]
        bootlimit: u32,
    },
    /// GRUB: a grubenv block driven with RAUC's scheme (`ORDER`, `A_OK`/`A_TRY`, `B_OK`/`B_TRY`).
    Grub {
        /// `grubenv`: path of the GRUB environment block (required).
        grubenv: PathBuf,
    },
}

fn default_fw_env_config() -> PathBuf {
    PathBuf::from("/etc/fw_env.config")
}

fn default_uboot_slot_var() -> String {
    "keel_slot".to_string()
}

fn default_uboot_slot_values() -> [String; 2] {
    ["A".to_string(), "B".to_string()]
}

fn default_bootlimit() -> u32 {
    1
}

/// `[ddi]`: the hawkBit DDI server `keel-agent run` talks to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdiConfig {
    /// Server base URL, e.g. `https://hawkbit.example.com`.
    pub url: String,
    /// `tenant`: hawkBit tenant in the DDI URL path; default `DEFAULT`.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// `controller_id`: this device's controller id on the server (required).
    pub controller_id: String,
    /// Target security token (`Authorization: TargetToken ...`).
    #[serde(default)]
    pub target_token: Option<String>,
    /// Gateway token (`Authorization: GatewayToken ...`), used when no target token is set.
    #[serde(default)]
    pub gateway_token: Option<String>,
    /// Poll interval used when the server does not say (`config.polling.sleep`).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
}

/// `[tls]` of agent.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) a server must chain to. Default: the Mozilla roots
    /// built into the agent (webpki-roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (then its intermediates) presented to servers that ask for one
    /// (keel-server `--tls-client-ca`: CN = controller id, O = tenant).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_tenant() -> String {
    "DEFAULT".to_string()
}

fn default_poll_secs() -> u64 {
    300
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text (no file name in errors).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls.client_cert.is_some() != self.tls.client_key.is_some() {
            return Err(ConfigError::Invalid(
                "[tls] client_cert and client_key go together: give both or neither".into(),
            ));
        }
        let a = &self.slots.a;
        let b = &self.slots.b;
        if a.targets.is_empty() {
            return Err(ConfigError::Invalid("slot A has no targets".into()));
        }
        let names_a: Vec<_> = a.targets.keys().collect();
        let names_b: Vec<_> = b.targets.keys().collect();
        if names_a != names_b {
            return Err(ConfigError::Invalid(format!(
                "slots A and B must have the same targets (A: {names_a:?}, B: {names_b:?})"
            )));
        }
        for (name, path_a) in &a.targets {
            if let Some(path_b) = b.targets.get(name) {
                if path_a == path_b {
                    return Err(ConfigError::Invalid(format!(
                        "target {name}: slots A and B use the same path {}",
                        path_a.display()
                    )));
                }
            }
        }
        if let Some(name) = self
            .factory_image_sizes
            .keys()
            .find(|n| !a.targets.contains_key(*n))
        {
            return Err(ConfigError::Invalid(format!(
                "factory_image_sizes: {name} is not a slot target"
            )));
        }
        if self.max_interrupted_attempts == 0 {
            return Err(ConfigError::Invalid(
                "max_interrupted_attempts must be at least 1".into(),
            ));
        }
        if a.cmdline_token(SlotId::A) == b.cmdline_token(SlotId::B) {
            return Err(ConfigError::Invalid(
                "slots A and B have the same cmdline_token".into(),
            ));
        }
        if let BootloaderConfig::Uboot {
            slot_values,
            bootlimit,
            ..
        } = &self.bootloader
        {
            if slot_values[0] == slot_values[1] {
                return Err(ConfigError::Invalid("uboot slot_values must differ".into()));
            }
            // U-Boot runs altbootcmd only when `bootlimit && bootcount > bootlimit`
            // (common/autoboot.c): 0 turns the fallback off, a failed update would never roll back.
            if *bootlimit == 0 {
                return Err(ConfigError::Invalid(
                    "uboot bootlimit = 0 disables U-Boot's fallback (altbootcmd runs only when bootlimit is non-zero); use 1 or more".into(),
                ));
            }
        }
        if let BootloaderConfig::Ebg { env, .. } = &self.bootloader {
            if env[0] == env[1] {
                return Err(ConfigError::Invalid(
                    "ebg env files must be two different files".into(),
                ));
            }
        }
        Ok(())
    }

    /// `<state_dir>/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
state_dir = "/var/lib/keel"
trusted_certs = "/etc/keel/trust.pem"

[bootloader]
type = "ebg"
env = ["/boot/BOOT0/BGENV.DAT", "/boot/BOOT1/BGENV.DAT"]
watchdog_sec = 60

[slots.A]
targets = { rootfs = "/dev/sda4", kernel = "/boot/BOOT0/linux.efi" }
cmdline_token = "root=PARTUUID=aaaa"
kernelfile = "C:BOOT0:linux.efi"

[slots.B]
targets = { rootfs = "/dev/sda5", kernel = "/boot/BOOT1/linux.efi" }
cmdline_token = "root=PARTUUID=bbbb"
kernelfile = "C:BOOT1:linux.efi"
"#;

    #[test]
    fn parses_the_documented_example() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(
            config.slots.get(SlotId::B).targets["rootfs"],
            PathBuf::from("/dev/sda5")
        );
        assert!(matches!(
            config.bootloader,
            BootloaderConfig::Ebg {
                watchdog_sec: 60,
                ..
            }
        ));
        assert_eq!(config.detect, Detect::Auto);
        assert_eq!(
            config.max_interrupted_attempts,
            DEFAULT_MAX_INTERRUPTED_ATTEMPTS
        );
        let five = Config::parse(&format!("max_interrupted_attempts = 5\n{EXAMPLE}")).unwrap();
        assert_eq!(five.max_interrupted_attempts, 5);
        assert!(matches!(
            Config::parse(&format!("max_interrupted_attempts = 0\n{EXAMPLE}")),
            Err(ConfigError::Invalid(m)) if m.contains("max_interrupted_attempts")
        ));
        assert!(!config.verify_after_write, "off by default");
        let verify = Config::parse(&format!("verify_after_write = true\n{EXAMPLE}")).unwrap();
        assert!(verify.verify_after_write);
    }

    #[test]
    fn rejects_uboot_bootlimit_zero() {
        let uboot = |limit: u32| {
            EXAMPLE.replace(
                "type = \"ebg\"\nenv = [\"/boot/BOOT0/BGENV.DAT\", \"/boot/BOOT1/BGENV.DAT\"]\nwatchdog_sec = 60",
                &format!("type = \"uboot\"\nbootlimit = {limit}"),
            )
        };
        let one = Config::parse(&uboot(1)).unwrap();
        assert!(matches!(
            one.bootloader,
            BootloaderConfig::Uboot { bootlimit: 1, .. }
        ));
        assert!(matches!(
            Config::parse(&uboot(0)),
            Err(ConfigError::Invalid(m)) if m.contains("bootlimit = 0 disables")
        ));
    }

    #[test]
    fn rejects_mismatched_targets_and_shared_paths() {
        let bad = EXAMPLE.replace("kernel = \"/boot/BOOT1/linux.efi\"", "boot = \"/x\"");
        assert!(matches!(Config::parse(&bad), Err(ConfigError::Invalid(_))));
        let shared = EXAMPLE.replace("/dev/sda5", "/dev/sda4");
        assert!(matches!(
            Config::parse(&shared),
            Err(ConfigError::Invalid(_))
        ));
        let unknown = format!("{EXAMPLE}\nbogus = 1\n");
        assert!(matches!(
            Config::parse(&unknown),
            Err(ConfigError::Parse { .. })
        ));
    }
}
