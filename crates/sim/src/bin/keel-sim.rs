//! `keel-sim`: a simulated EFI Boot Guard device on plain files, for the demo and for manual runs.
//!
//! The device is described by an ordinary `keel-agent` configuration (EBG bootloader, file-backed
//! slots, `cmdline_path`/`boot_id_path` pointing at files). `keel-sim` plays the parts that are not
//! the agent's: the factory that provisions the disk, and the firmware + EFI Boot Guard loader that
//! picks a slot at every power-on (the same rules as `keel_bootenv::ebg::select_boot`).
//!
//! ```text
//! keel-sim provision -c agent.toml --image rootfs=v1.img   slot A holds the image and boots; B is empty
//! keel-sim boot -c agent.toml                              power-on: the loader picks a slot
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keel_agent::config::BootloaderConfig;
use keel_agent::{Config, SlotId};
use keel_bootenv::ebg::{BgEnv, BgEnvSet, EnvLocation, UState};
use keel_bootenv::storage::{replace_file, FsStorage};

const USAGE: &str = "\
usage: keel-sim provision -c AGENT_CONFIG --image TARGET=FILE [--image ...]
       keel-sim boot -c AGENT_CONFIG";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel-sim: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or(USAGE)?;
    let mut config_path = None;
    let mut images = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => config_path = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--image" => {
                let spec = args.next().ok_or(USAGE)?;
                let (target, file) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--image takes TARGET=FILE, got {spec:?}"))?;
                images.push((target.to_string(), PathBuf::from(file)));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let config_path = config_path.ok_or(USAGE)?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let env_paths = match &config.bootloader {
        BootloaderConfig::Ebg { env, .. } => env.clone(),
        _ => {
            return Err(
                "keel-sim simulates EFI Boot Guard devices only (bootloader type \"ebg\")".into(),
            )
        }
    };
    match command.as_str() {
        "provision" => provision(&config, &env_paths, &images),
        "boot" => boot(&config, &env_paths),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// The slot's `kernelfile`: required, because keel-agent tells EBG config copies apart by it.
fn kernelfile(config: &Config, slot: SlotId) -> Result<&str, String> {
    config.slots.get(slot).kernelfile.as_deref().ok_or_else(|| {
        format!("slot {slot} has no kernelfile; keel-sim and keel-agent map EFI Boot Guard config copies to slots by it")
    })
}

fn slot_env(config: &Config, slot: SlotId, revision: u32) -> Result<BgEnv, String> {
    let slot_config = config.slots.get(slot);
    let mut env = BgEnv::new();
    env.kernelfile = kernelfile(config, slot)?.to_string();
    env.kernelparams = slot_config
        .kernelparams
        .clone()
        .unwrap_or_else(|| slot_config.cmdline_token(slot));
    env.ustate = UState::OK;
    env.revision = revision;
    Ok(env)
}

/// Factory state: every target of slot A holds its image, slot B's targets are zero-filled files
/// of the same size, config copy 0 (slot A) is current, copy 1 (slot B) is older.
fn provision(
    config: &Config,
    env_paths: &[PathBuf; 2],
    images: &[(String, PathBuf)],
) -> Result<(), String> {
    let storage = FsStorage;
    for (target, a_path) in &config.slots.a.targets {
        let b_path = config
            .slots
            .b
            .targets
            .get(target)
            .ok_or_else(|| format!("slot B has no target {target:?}"))?;
        let image = images
            .iter()
            .find(|(name, _)| name == target)
            .map(|(_, file)| file)
            .ok_or_else(|| format!("no --image for target {target:?}"))?;
        let bytes =
            std::fs::read(image).map_err(|e| format!("reading {}: {e}", image.display()))?;
        write_file(&storage, a_path, &bytes)?;
        write_file(&storage, b_path, &vec![0u8; bytes.len()])?;
    }
    for (slot, revision) in [(SlotId::A, 2), (SlotId::B, 1)] {
        let bytes = slot_env(config, slot, revision)?
            .to_bytes()
            .map_err(|e| e.to_string())?;
        write_file(&storage, &env_paths[slot.index()], &bytes)?;
    }
    let cmdline = slot_env(config, SlotId::A, 0)?.kernelparams;
    power_on(config, SlotId::A, &cmdline, "provisioned")?;
    println!("provisioned: slot A active, slot B empty");
    Ok(())
}

fn write_file(storage: &FsStorage, path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    replace_file(storage, path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// One power-on: the loader model picks a config copy (and writes back TESTING / FAILED as
/// EFI Boot Guard does); the kernel start is modelled by a new command line and boot id.
fn boot(config: &Config, env_paths: &[PathBuf; 2]) -> Result<(), String> {
    let locations = env_paths.iter().cloned().map(EnvLocation::File).collect();
    let mut set = BgEnvSet::open(FsStorage::shared(), locations).map_err(|e| e.to_string())?;
    let decision = set.simulate_boot().map_err(|e| e.to_string())?;
    let env = decision.booted.ok_or_else(|| {
        format!(
            "EFI Boot Guard found nothing to boot ({:?})",
            decision.action
        )
    })?;
    let kernelfiles = [
        kernelfile(config, SlotId::A)?,
        kernelfile(config, SlotId::B)?,
    ];
    let slot = [SlotId::A, SlotId::B]
        .into_iter()
        .find(|s| kernelfiles[s.index()].eq_ignore_ascii_case(&env.kernelfile));
    let slot = slot.ok_or_else(|| format!("kernelfile {:?} names no slot", env.kernelfile))?;
    // The kernel gets the command line of the config copy the loader chose.
    power_on(
        config,
        slot,
        &env.kernelparams,
        &format!("{:?}", decision.action),
    )?;
    println!(
        "booted slot {slot} ({:?}, revision {}, ustate {})",
        decision.action, env.revision, env.ustate.0
    );
    Ok(())
}

fn power_on(config: &Config, slot: SlotId, kernelparams: &str, why: &str) -> Result<(), String> {
    let storage = FsStorage;
    let token = config.slots.get(slot).cmdline_token(slot);
    let cmdline = if kernelparams.split_whitespace().any(|t| t == token) {
        kernelparams.to_string()
    } else {
        format!("{kernelparams} {token}")
    };
    write_file(
        &storage,
        &config.cmdline_path,
        format!("{cmdline}\n").as_bytes(),
    )?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    write_file(
        &storage,
        &config.boot_id_path,
        format!("keel-sim-{nanos:x}-{why}\n").as_bytes(),
    )
}
