//! keel-crashcheck: replays the write logs recorded by qemu/crash-consistency.sh and checks
//! every generated disk state (docs/crash-consistency.md).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use keel_bootenv::ebg::{select_boot, BgEnv, BgEnvSet, BootAction, CopyState};
use keel_crashcheck::disk::{Disk, Region};
use keel_crashcheck::replay::{self, Info, Options, StateId};
use keel_crashcheck::wlog::Log;
use sha2::{Digest, Sha256};

/// Seconds fsck.vfat may take on one partition image.
const FSCK_TIMEOUT: &str = "3";

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

/// What the FAT tools and the env parsers make of one BOOT partition image.
#[derive(Debug)]
struct BootView {
    fsck: FsckClass,
    env_bytes: Option<Vec<u8>>,
    copy: CopyState,
    /// bg_printenv's reading: None if it could not read the env.
    printenv: Option<(u8, u32, u8)>,
    uki: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FsckClass {
    Clean,
    /// Only the dirty bit (the volume was mounted when the power went).
    Dirty,
    /// Anything else fsck.vfat -n reports.
    Findings(String),
}

struct Ctx {
    args: Args,
    kernel: [String; 2],
    boot: [Region; 2],
    roots: [Region; 2],
    data: Region,
    rootfs_bytes: usize,
    work: PathBuf,
    scratch: PathBuf,
    cache: HashMap<(usize, u128), Rc<BootView>>,
    expected_uki: [Option<[u8; 32]>; 2],
    rootfs3_sha: [u8; 32],
    // results
    states: BTreeMap<String, usize>,
    unbootable: Vec<String>,
    /// Unbootable states that contain a garbage sector (a separate fault model).
    unbootable_garbage: Vec<String>,
    /// States that contain a garbage sector.
    garbage_states: usize,
    fsck_states: BTreeMap<FsckClass, usize>,
    fsck_images: HashSet<(usize, u128)>,
    /// The first state showing each kind of fsck result.
    fsck_examples: BTreeMap<FsckClass, String>,
    actions: BTreeMap<String, usize>,
    agent_runs: usize,
    agent_failures: Vec<String>,
    exports: Vec<(PathBuf, String, String)>,
    /// Install/confirm states exported for a boot of the real guest.
    guest_exports: Vec<(PathBuf, String, String)>,
    exported_keys: HashSet<String>,
    /// Boot phase: index of the first entry that writes outside BOOT0/BOOT1 (the kernel's);
    /// the entries before it are EFI Boot Guard's.
    loader_end: Option<usize>,
    /// States where the slot not booted was incomplete (shows the root check has teeth).
    other_incomplete: usize,
}

fn read_disk_env(path: &Path) -> Result<HashMap<String, String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run qemu/build-disk.sh)", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn num(env: &HashMap<String, String>, key: &str) -> Result<u64> {
    env.get(key)
        .ok_or_else(|| anyhow!("disk.env has no {key} (rebuild the disk with qemu/build-disk.sh)"))?
        .parse()
        .with_context(|| format!("disk.env: {key} is not a number"))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn run(cmd: &mut Command) -> Result<(i32, Vec<u8>, String)> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn classify_fsck(rc: i32, text: &str) -> FsckClass {
    if rc == 0 {
        return FsckClass::Clean;
    }
    let findings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("fsck.fat ")
                && !l.starts_with("Dirty bit is set")
                && !l.contains("Automatically removing dirty bit")
                && !l.starts_with("Leaving filesystem unchanged")
                && !l.contains(" files, ")
                && !l.starts_with("1) Remove dirty bit")
                && !l.starts_with("2) No action")
                && !l.starts_with("*** Filesystem was changed ***")
        })
        .collect();
    if findings.is_empty() {
        FsckClass::Dirty
    } else {
        // Numbers and garbage names vary per state; the class is the kind of finding.
        let text = findings
            .iter()
            .take(3)
            .map(|l| {
                if l.chars().any(|c| !(' '..='~').contains(&c)) {
                    "<an entry with a garbage name>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join(" | ");
        let mut class = String::new();
        let mut in_number = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    class.push('N');
                }
                in_number = true;
            } else {
                in_number = false;
                class.push(c);
            }
        }
        FsckClass::Findings(class)
    }
}

fn parse_printenv(text: &str) -> Option<(u8, u32, u8)> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    Some((
        get("IN_PROGRESS")?.parse().ok()?,
        get("REVISION")?.parse().ok()?,
        get("USTATE")?.parse().ok()?,
    ))
}

impl Ctx {
    fn inspect(&self, index: usize, image: &Path) -> Result<BootView> {
        // fsck.vfat can take minutes on a directory sector full of garbage (it renames every
        // bad entry); give up after FSCK_TIMEOUT and record that as a finding.
        let (rc, out, err) = run(Command::new("timeout")
            .arg(FSCK_TIMEOUT)
            .arg("fsck.vfat")
            .arg("-n")
            .arg(image))?;
        let fsck = if rc == 124 {
            FsckClass::Findings(format!("fsck.vfat -n did not finish in {FSCK_TIMEOUT}s"))
        } else {
            classify_fsck(rc, &format!("{}{err}", String::from_utf8_lossy(&out)))
        };
        let dir = self.scratch.join(format!("env{index}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let env_path = dir.join("BGENV.DAT");
        let (rc, _, _) = run(Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(image)
            .arg("::/BGENV.DAT")
            .arg(&env_path))?;
        let (env_bytes, copy, printenv) = if rc == 0 && env_path.exists() {
            let bytes = fs::read(&env_path)?;
            let copy = match BgEnv::parse(&bytes) {
                Ok(env) => CopyState::Valid(env),
                Err(e) => CopyState::Invalid(e.to_string()),
            };
            let (rc, out, _) = run(Command::new("bg_printenv")
                .arg("-f")
                .arg(&env_path)
                .arg("-r"))?;
            let printenv = if rc == 0 {
                parse_printenv(&String::from_utf8_lossy(&out))
            } else {
                None
            };
            (Some(bytes), copy, printenv)
        } else {
            (None, CopyState::Missing, None)
        };
        let (rc, out, _) = run(Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(image)
            .arg("::/linux.efi")
            .arg("-"))?;
        let uki = (rc == 0).then(|| sha256(&out));
        Ok(BootView {
            fsck,
            env_bytes,
            copy,
            printenv,
            uki,
        })
    }

    fn view(&mut self, disk: &Disk, index: usize) -> Result<Rc<BootView>> {
        let key = (index, disk.mirrors[index].key());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let image = self.scratch.join(format!("boot{index}.img"));
        let v = Rc::new(self.inspect(index, &image)?);
        self.cache.insert(key, v.clone());
        Ok(v)
    }

    fn slot_of(&self, env: &BgEnv) -> Option<usize> {
        self.kernel.iter().position(|k| *k == env.kernelfile)
    }

    /// The oracle: problems that make this state unbootable (or the model inconsistent).
    fn check(&mut self, phase: &str, id: &StateId, info: &Info, disk: &mut Disk) -> Result<()> {
        let class = self.class_of(phase, info);
        if info.detail.contains("garbage") {
            self.garbage_states += 1;
        }
        *self.states.entry(class.clone()).or_default() += 1;
        let views = [self.view(disk, 0)?, self.view(disk, 1)?];
        let mut problems = Vec::new();
        for (i, v) in views.iter().enumerate() {
            *self.fsck_states.entry(v.fsck.clone()).or_default() += 1;
            self.fsck_examples
                .entry(v.fsck.clone())
                .or_insert_with(|| format!("{id} BOOT{i}"));
            if !matches!(v.fsck, FsckClass::Clean) {
                self.fsck_images.insert((i, disk.mirrors[i].key()));
            }
            let ours = v
                .copy
                .env()
                .map(|e| (e.in_progress, e.revision, e.ustate.0));
            if ours != v.printenv && !(ours.is_none() && v.printenv.is_none()) {
                problems.push(format!(
                    "BOOT{i}: keel's parser and bg_printenv disagree ({} vs {})",
                    triple(ours),
                    triple(v.printenv)
                ));
            }
        }
        let copies = [views[0].copy.clone(), views[1].copy.clone()];
        let decision = select_boot(&copies);
        *self
            .actions
            .entry(format!("{class}: {}", action_name(decision.action)))
            .or_default() += 1;
        let booted = match (&decision.action, &decision.booted) {
            (BootAction::NoValidConfig, _) | (_, None) => {
                problems.push(format!(
                    "no valid environment to boot from (BOOT0: {}, BOOT1: {})",
                    describe(&views[0].copy),
                    describe(&views[1].copy)
                ));
                None
            }
            (_, Some(env)) => Some(env.clone()),
        };
        let mut slot = None;
        if let Some(env) = &booted {
            match self.slot_of(env) {
                None => problems.push(format!(
                    "the loader would start \"{}\", no slot's kernel",
                    env.kernelfile
                )),
                Some(s) => {
                    slot = Some(s);
                    if views[s].uki.is_none() || views[s].uki != self.expected_uki[s] {
                        problems.push(format!(
                            "slot {}: BOOT{s}/linux.efi {}",
                            slot_name(s),
                            if views[s].uki.is_none() {
                                "unreadable"
                            } else {
                                "differs from the slot's UKI"
                            }
                        ));
                    }
                    if disk.slots[1 - s].matching().is_none() {
                        self.other_incomplete += 1;
                    }
                    let tracker = &disk.slots[s];
                    match tracker.matching() {
                        None => problems.push(format!(
                            "slot {}: root filesystem incomplete ({})",
                            slot_name(s),
                            tracker
                                .mismatches()
                                .map(|(n, c)| format!("{c} sectors differ from {n}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                        Some("v1") if env.revision > 2 => problems.push(format!(
                            "slot {}: activated (revision {}) but holds the old image v1",
                            slot_name(s),
                            env.revision
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
        if !problems.is_empty() {
            let list = if info.detail.contains("garbage") {
                &mut self.unbootable_garbage
            } else {
                &mut self.unbootable
            };
            list.push(format!(
                "{id} (seed {}; {}): {}",
                self.args.seed,
                if info.detail.is_empty() {
                    "as logged"
                } else {
                    &info.detail
                },
                problems.join("; ")
            ));
            return Ok(());
        }
        let n: usize = self.states.values().sum();
        if n.is_multiple_of(1000) {
            eprintln!(
                "keel-crashcheck: {n} states checked ({} distinct BOOT images, {} unbootable, {} agent runs)",
                self.cache.len(),
                self.unbootable.len(),
                self.agent_runs
            );
        }
        if self.args.agent_every > 0 && n.is_multiple_of(self.args.agent_every) {
            if let Some(s) = slot {
                self.agent_runs += 1;
                if let Err(e) = self.agent_check(disk, &views, s) {
                    self.agent_failures
                        .push(format!("{id} (seed {}): {e:#}", self.args.seed));
                }
            }
        }
        if class == "loader" && self.exports.len() < self.args.loader_exports {
            // One state per distinct loader outcome (decision, slot, which copies are valid,
            // fsck verdicts), so the real-loader boots cover the different cases.
            let validity = |c: &CopyState| match c {
                CopyState::Valid(e) => format!("rev{}/{}", e.revision, e.ustate.name()),
                CopyState::Invalid(_) => "invalid".into(),
                CopyState::Missing => "missing".into(),
            };
            let signature = format!(
                "loader {}, slot {}, BOOT0 {}, BOOT1 {}, fsck.vfat {}/{}",
                action_name(decision.action),
                slot.map(slot_name).unwrap_or("-"),
                validity(&copies[0]),
                validity(&copies[1]),
                fsck_word(&views[0].fsck),
                fsck_word(&views[1].fsck)
            );
            if let (Some(s), true) = (slot, self.exported_keys.insert(signature.clone())) {
                let path = self
                    .args
                    .out_dir
                    .join(format!("loader-state-{}.img", self.exports.len()));
                disk.export(&self.args.out_dir.join(format!("{phase}-base.img")), &path)?;
                self.exports
                    .push((path, self.kernel[s].clone(), format!("{id}: {signature}")));
            }
        }
        // Half of the guest boots for install states, half for confirm states.
        let per_class = self.args.guest_exports.div_ceil(2);
        let in_class = self
            .guest_exports
            .iter()
            .filter(|(_, _, id)| {
                id.starts_with(&format!("{phase}/")) && id.contains(&format!(": {class}:"))
            })
            .count();
        if class != "loader"
            && self.guest_exports.len() < self.args.guest_exports
            && in_class < per_class
        {
            // One state per (phase part, loader decision, booted slot, fsck findings or not).
            let findings = views
                .iter()
                .any(|v| matches!(v.fsck, FsckClass::Findings(_)));
            let garbage = info.detail.contains("garbage");
            let signature = format!(
                "{class}: loader {}, slot {}, fsck.vfat {}{}",
                action_name(decision.action),
                slot.map(slot_name).unwrap_or("-"),
                if findings {
                    "findings"
                } else {
                    "clean or dirty bit"
                },
                if garbage { ", garbage sector" } else { "" }
            );
            if let (Some(s), true) = (slot, self.exported_keys.insert(signature.clone())) {
                let path = self
                    .args
                    .out_dir
                    .join(format!("guest-state-{}.img", self.guest_exports.len()));
                disk.export(&self.args.out_dir.join(format!("{phase}-base.img")), &path)?;
                self.guest_exports.push((
                    path,
                    self.kernel[s].clone(),
                    format!("{id}: {signature}"),
                ));
            }
        }
        Ok(())
    }

    fn class_of(&self, phase: &str, info: &Info) -> String {
        if phase == "boot" {
            match (info.last_entry, self.loader_end) {
                (None, _) => "loader".into(),
                (Some(e), Some(end)) if e < end => "loader".into(),
                _ => "confirm".into(),
            }
        } else {
            phase.to_string()
        }
    }

    /// The restarted agent on the host, on this state's env copies, slots and state dir.
    fn agent_check(&self, disk: &Disk, views: &[Rc<BootView>; 2], booted: usize) -> Result<()> {
        let agent = self
            .args
            .agent_bin
            .as_ref()
            .ok_or_else(|| anyhow!("--agent-bin is needed for the restarted-agent check"))?;
        let dir = self.scratch.join("agent");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut env_dirs = Vec::new();
        for (i, v) in views.iter().enumerate() {
            let d = dir.join(format!("boot{i}"));
            fs::create_dir_all(&d)?;
            if let Some(bytes) = &v.env_bytes {
                fs::write(d.join("BGENV.DAT"), bytes)?;
            }
            env_dirs.push(d);
        }
        // The loader's own write at power-on (INSTALLED -> TESTING, TESTING -> FAILED).
        let decision = BgEnvSet::open_dirs(&env_dirs)
            .context("loading the env copies")?
            .simulate_boot()
            .context("applying the loader's write-back")?;
        let loader_slot = decision.booted.as_ref().and_then(|e| self.slot_of(e));
        if loader_slot != Some(booted) {
            bail!(
                "the loader model on the extracted env files boots slot {}, on the image slot {}",
                loader_slot.map(slot_name).unwrap_or("none"),
                slot_name(booted)
            );
        }
        for (i, r) in self.roots.iter().enumerate() {
            let mut f = fs::File::create(dir.join(format!("root{i}.img")))?;
            disk.copy_region(r, &mut f)?;
        }
        let data = dir.join("data.img");
        disk.copy_region(&self.data, &mut fs::File::create(&data)?)?;
        let (rc, out, err) = run(Command::new("e2fsck").arg("-fy").arg(&data))?;
        if rc >= 4 {
            bail!(
                "e2fsck of the data partition exited {rc}: {}{err}",
                String::from_utf8_lossy(&out)
            );
        }
        let (rc, _, err) = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump /keel {}", dir.display()))
            .arg(&data))?;
        if rc != 0 || !dir.join("keel").is_dir() {
            bail!("debugfs could not copy /keel out of the data partition: {err}");
        }
        fs::write(
            dir.join("cmdline"),
            format!("console=ttyS0 keel.slot={}\n", slot_name(booted)),
        )?;
        fs::write(dir.join("boot_id"), format!("{:032x}\n", rand_id()))?;
        let config = dir.join("agent.toml");
        let slot_cfg = |i: usize| {
            format!(
                "[slots.{}]\ntargets = {{ rootfs = \"{}\" }}\ncmdline_token = \"keel.slot={}\"\nkernelfile = \"{}\"\nkernelparams = \"\"\n",
                slot_name(i),
                dir.join(format!("root{i}.img")).display(),
                slot_name(i),
                self.kernel[i]
            )
        };
        fs::write(
            &config,
            format!(
                "state_dir = \"{d}/keel\"\ntrusted_certs = \"{w}/signer.pem\"\ndetect = \"cmdline\"\ncmdline_path = \"{d}/cmdline\"\nboot_id_path = \"{d}/boot_id\"\n\n[bootloader]\ntype = \"ebg\"\nenv = [\"{d}/boot0/BGENV.DAT\", \"{d}/boot1/BGENV.DAT\"]\nwatchdog_sec = 30\n\n{}\n{}",
                slot_cfg(0),
                slot_cfg(1),
                d = dir.display(),
                w = self.work.display()
            ),
        )?;
        let agent_run = |what: &[&str]| -> Result<String> {
            let (rc, out, err) = run(Command::new(agent).arg("-c").arg(&config).args(what))?;
            let text = format!("{}{err}", String::from_utf8_lossy(&out));
            if rc != 0 {
                bail!("keel-agent {} exited {rc}: {}", what.join(" "), text.trim());
            }
            Ok(text)
        };
        let status = agent_run(&["status", "--json"])?;
        if status.contains("\"state\": \"testing\"") {
            agent_run(&["confirm"])?;
        }
        agent_run(&["install", &self.work.join("update-2.swu").to_string_lossy()])?;
        let other = 1 - booted;
        let written = fs::read(dir.join(format!("root{other}.img")))?;
        if sha256(&written[..self.rootfs_bytes.min(written.len())]) != self.rootfs3_sha {
            bail!(
                "after the install, slot {} does not hold update-2's image",
                slot_name(other)
            );
        }
        let after = BgEnvSet::open_dirs(&env_dirs)?;
        let next = select_boot(after.copies());
        let next_slot = next.booted.as_ref().and_then(|e| self.slot_of(e));
        if next.action != BootAction::StartedTest || next_slot != Some(other) {
            bail!(
                "after the install the loader would not test slot {} (it {}, slot {})",
                slot_name(other),
                action_name(next.action),
                next_slot.map(slot_name).unwrap_or("none")
            );
        }
        Ok(())
    }
}

fn rand_id() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    t ^ ((std::process::id() as u128) << 64)
}

fn triple(t: Option<(u8, u32, u8)>) -> String {
    match t {
        Some((p, r, u)) => format!("in_progress={p} revision={r} ustate={u}"),
        None => "unreadable".into(),
    }
}

fn action_name(action: BootAction) -> &'static str {
    match action {
        BootAction::Normal => "boots the latest copy",
        BootAction::SkippedInProgress => "skips the in-progress copy",
        BootAction::StartedTest => "starts a test boot (INSTALLED -> TESTING)",
        BootAction::RolledBack => "rolls back (TESTING -> FAILED)",
        BootAction::NoValidConfig => "finds no valid copy",
    }
}

fn fsck_word(f: &FsckClass) -> &'static str {
    match f {
        FsckClass::Clean => "clean",
        FsckClass::Dirty => "dirty bit",
        FsckClass::Findings(_) => "findings",
    }
}

fn slot_name(i: usize) -> &'static str {
    if i == 0 {
        "A"
    } else {
        "B"
    }
}

fn describe(c: &CopyState) -> String {
    match c {
        CopyState::Valid(e) => format!("revision {} {}", e.revision, e.ustate.name()),
        CopyState::Invalid(why) => format!("invalid: {why}"),
        CopyState::Missing => "BGENV.DAT missing".into(),
    }
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
