//! keel-crashcheck: replays the write logs recorded by qemu/crash-consistency.sh and checks
//! every generated disk state (docs/crash-consistency.md).
#![forbid(unsafe_code)]

mod check;
mod tools;

use anyhow::{bail, Context, Result};
use check::*;
use clap::Parser;
use keel_crashcheck::disk::{Disk, Region};
use keel_crashcheck::replay::{self, Options};
use keel_crashcheck::wlog::Log;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tools::*;

/// Replays blklogwrites recordings and checks every crash state.
#[derive(Parser, Debug)]
#[command(name = "keel-crashcheck")]
struct Args {
    /// Output directory of qemu/crash-consistency.sh (disk.env, work/, PHASE-base.img, PHASE.wlog).
    #[arg(long)]
    out_dir: PathBuf,
    /// Phases to replay, in order: NAME (reads NAME-base.img and NAME.wlog).
    #[arg(long = "phase", required = true)]
    phases: Vec<String>,
    /// Seed of the random states.
    #[arg(long)]
    seed: u64,
    /// Random states per flush interval.
    #[arg(long, default_value_t = 40)]
    random: usize,
    /// At most this many omit-one states per flush interval.
    #[arg(long, default_value_t = 64)]
    omit_cap: usize,
    /// Run the restarted agent on every k-th state (0: never).
    #[arg(long, default_value_t = 150)]
    agent_every: usize,
    /// keel-agent binary for the restarted-agent check.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Export up to this many distinct loader-phase states as disk images for QEMU boots.
    #[arg(long, default_value_t = 0)]
    loader_exports: usize,
    /// Export up to this many install/confirm states (one per distinct loader decision, slot
    /// and fsck outcome) for boots of the real guest.
    #[arg(long, default_value_t = 0)]
    guest_exports: usize,
    /// Scratch directory (tmpfs is best).
    #[arg(long, default_value = "/dev/shm/keel-crashcheck")]
    scratch: PathBuf,
    /// Count unbootable states that contain a garbage sector as failures too.
    #[arg(long)]
    garbage_fatal: bool,
    /// Only regenerate the state with this id and write it to --export (no checks).
    #[arg(long, requires = "export")]
    only: Option<String>,
    /// Where --only writes the disk image.
    #[arg(long)]
    export: Option<PathBuf>,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("keel-crashcheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool> {
    let args = Args::parse();
    let env = read_disk_env(&args.out_dir.join("disk.env"))?;
    let boot_bytes = num(&env, "boot_bytes")?;
    let root_bytes = num(&env, "root_bytes")?;
    let rootfs_bytes = num(&env, "rootfs_bytes")? as usize;
    let work = args.out_dir.join("work");
    let image = |name: &str| -> Result<Vec<u8>> {
        let p = work.join(name);
        let mut b = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        b.truncate(rootfs_bytes);
        Ok(b)
    };
    let v1 = image("rootfs-1.ext4")?;
    let v2 = image("rootfs-2.ext4")?;
    let v3 = image("rootfs-3.ext4")?;
    let scratch = args.scratch.clone();
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let kernel = [
        env.get("kernel_a").cloned().unwrap_or_default(),
        env.get("kernel_b").cloned().unwrap_or_default(),
    ];
    let mut ctx = Ctx {
        kernel,
        boot: [
            Region::from_bytes("BOOT0", num(&env, "boot0_offset")?, boot_bytes),
            Region::from_bytes("BOOT1", num(&env, "boot1_offset")?, boot_bytes),
        ],
        roots: [
            Region::from_bytes("rootA", num(&env, "rootA_offset")?, root_bytes),
            Region::from_bytes("rootB", num(&env, "rootB_offset")?, root_bytes),
        ],
        data: Region::from_bytes("data", num(&env, "data_offset")?, num(&env, "data_bytes")?),
        rootfs_bytes,
        work,
        scratch,
        cache: HashMap::new(),
        expected_uki: [None, None],
        rootfs3_sha: sha256(&v3),
        states: BTreeMap::new(),
        unbootable: Vec::new(),
        unbootable_garbage: Vec::new(),
        garbage_states: 0,
        fsck_states: BTreeMap::new(),
        fsck_images: HashSet::new(),
        fsck_examples: BTreeMap::new(),
        actions: BTreeMap::new(),
        agent_runs: 0,
        agent_failures: Vec::new(),
        exports: Vec::new(),
        guest_exports: Vec::new(),
        exported_keys: HashSet::new(),
        loader_end: None,
        other_incomplete: 0,
        args,
    };
    let opts = Options {
        seed: ctx.args.seed,
        random_per_interval: ctx.args.random,
        omit_cap: ctx.args.omit_cap,
    };
    let started = Instant::now();
    let mut total = 0usize;
    for phase in ctx.args.phases.clone() {
        let base = ctx.args.out_dir.join(format!("{phase}-base.img"));
        let log_path = ctx.args.out_dir.join(format!("{phase}.wlog"));
        let bytes = fs::read(&log_path)
            .with_context(|| format!("cannot read the write log {}", log_path.display()))?;
        let log = Log::parse(bytes).with_context(|| format!("{}", log_path.display()))?;
        let mut disk = Disk::open(&base)?;
        for (i, r) in ctx.roots.clone().into_iter().enumerate() {
            let _ = i;
            disk.track_slot(
                r,
                vec![("v1".into(), v1.clone()), ("v2".into(), v2.clone())],
            )?;
        }
        for (i, r) in ctx.boot.clone().into_iter().enumerate() {
            disk.mirror(r, &ctx.scratch.join(format!("boot{i}.img")))?;
        }
        ctx.cache.clear();
        ctx.loader_end = log
            .entries
            .iter()
            .find(|e| e.is_write() && !ctx.boot.iter().any(|b| b.contains(e.sector)))
            .map(|e| e.index);
        if ctx.expected_uki == [None, None] {
            let v = [ctx.view(&disk, 0)?, ctx.view(&disk, 1)?];
            ctx.expected_uki = [v[0].uki, v[1].uki];
            if v.iter().any(|v| v.uki.is_none()) {
                bail!(
                    "the base image of phase {phase} has no readable linux.efi on a BOOT partition"
                );
            }
        }
        let t = Instant::now();
        let summary = if let Some(only) = ctx.args.only.clone() {
            let out = ctx.args.export.clone().unwrap_or_default();
            let mut found = false;
            let s = replay::replay(&log, &mut disk, &phase, &opts, |id, _, disk| {
                if id.to_string() == only {
                    disk.export(&base, &out)?;
                    found = true;
                    return Ok(false);
                }
                Ok(true)
            })?;
            if found {
                println!("wrote state {only} to {}", out.display());
                return Ok(true);
            }
            s
        } else {
            replay::replay(&log, &mut disk, &phase, &opts, |id, info, disk| {
                ctx.check(&phase, id, info, disk)?;
                Ok(true)
            })?
        };
        total += summary.states;
        println!(
            "phase {phase}: {} log entries ({} writes, {} flushes, {} discards not applied), {} states in {:.1}s{}",
            log.entries.len(),
            summary.writes,
            summary.barriers,
            summary.discards,
            summary.states,
            t.elapsed().as_secs_f64(),
            ctx.loader_end
                .map(|e| format!(", loader window: entries 0..{e}"))
                .unwrap_or_default()
        );
    }
    if ctx.args.only.is_some() {
        bail!("no state with that id (ids look like install/i12/rand3; same seed and options as the run)");
    }
    let mut f = fs::File::create(ctx.args.out_dir.join("loader-states.txt"))?;
    for (path, kernel, id) in &ctx.exports {
        writeln!(f, "{}\t{kernel}\t{id}", path.display())?;
    }
    let mut f = fs::File::create(ctx.args.out_dir.join("guest-states.txt"))?;
    for (path, kernel, id) in &ctx.guest_exports {
        writeln!(f, "{}\t{kernel}\t{id}", path.display())?;
    }
    println!(
        "states per class: {}",
        ctx.states
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, v) in &ctx.actions {
        println!("  loader decision {k}: {v} states");
    }
    println!(
        "states where the slot not booted held neither v1 nor v2 (a partly written slot): {}",
        ctx.other_incomplete
    );
    println!(
        "distinct BOOT partition images checked with fsck.vfat/mcopy/bg_printenv: {}",
        ctx.cache.len()
    );
    for (k, v) in &ctx.fsck_states {
        let what = match k {
            FsckClass::Clean => "clean".to_string(),
            FsckClass::Dirty => "dirty bit only".to_string(),
            FsckClass::Findings(f) => f.clone(),
        };
        println!(
            "  fsck.vfat -n: {what}: {v} partition states (first: {})",
            ctx.fsck_examples.get(k).map(String::as_str).unwrap_or("-")
        );
    }
    println!(
        "restarted agent (status, confirm if testing, install into the other slot): {} runs, {} failed",
        ctx.agent_runs,
        ctx.agent_failures.len()
    );
    for f in ctx.agent_failures.iter().take(20) {
        println!("  AGENT FAILURE {f}");
    }
    for u in ctx.unbootable.iter().take(50) {
        println!("  UNBOOTABLE {u}");
    }
    for u in ctx.unbootable_garbage.iter().take(20) {
        println!("  UNBOOTABLE (garbage sector) {u}");
    }
    println!(
        "garbage-sector fault model: {} of the {} states with a random-bytes sector are unbootable{}",
        ctx.unbootable_garbage.len(),
        ctx.garbage_states,
        if ctx.args.garbage_fatal { "" } else { " (reported, not fatal: docs/crash-consistency.md)" }
    );
    println!(
        "replayed {total} disk states, {} unbootable (seed {}, {:.0}s)",
        ctx.unbootable.len()
            + if ctx.args.garbage_fatal {
                ctx.unbootable_garbage.len()
            } else {
                0
            },
        ctx.args.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(ctx.unbootable.is_empty()
        && ctx.agent_failures.is_empty()
        && (!ctx.args.garbage_fatal || ctx.unbootable_garbage.is_empty()))
}
