//! The oracle: each generated disk state checked as the loader and a restarted agent would see
//! it (docs/crash-consistency.md).

use crate::tools::*;
use crate::Args;
use anyhow::{anyhow, bail, Context, Result};
use keel_bootenv::ebg::{select_boot, BgEnv, BgEnvSet, BootAction, CopyState};
use keel_crashcheck::disk::{Disk, Region};
use keel_crashcheck::replay::{Info, StateId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

/// What the FAT tools and the env parsers make of one BOOT partition image.
#[derive(Debug)]
pub(crate) struct BootView {
    pub(crate) fsck: FsckClass,
    pub(crate) env_bytes: Option<Vec<u8>>,
    pub(crate) copy: CopyState,
    /// bg_printenv's reading: None if it could not read the env.
    pub(crate) printenv: Option<(u8, u32, u8)>,
    pub(crate) uki: Option<[u8; 32]>,
}

pub(crate) struct Ctx {
    pub(crate) args: Args,
    pub(crate) kernel: [String; 2],
    pub(crate) boot: [Region; 2],
    pub(crate) roots: [Region; 2],
    pub(crate) data: Region,
    pub(crate) rootfs_bytes: usize,
    pub(crate) work: PathBuf,
    pub(crate) scratch: PathBuf,
    pub(crate) cache: HashMap<(usize, u128), Rc<BootView>>,
    pub(crate) expected_uki: [Option<[u8; 32]>; 2],
    pub(crate) rootfs3_sha: [u8; 32],
    // results
    pub(crate) states: BTreeMap<String, usize>,
    pub(crate) unbootable: Vec<String>,
    /// Unbootable states that contain a garbage sector (a separate fault model).
    pub(crate) unbootable_garbage: Vec<String>,
    /// States that contain a garbage sector.
    pub(crate) garbage_states: usize,
    pub(crate) fsck_states: BTreeMap<FsckClass, usize>,
    pub(crate) fsck_images: HashSet<(usize, u128)>,
    /// The first state showing each kind of fsck result.
    pub(crate) fsck_examples: BTreeMap<FsckClass, String>,
    pub(crate) actions: BTreeMap<String, usize>,
    pub(crate) agent_runs: usize,
    pub(crate) agent_failures: Vec<String>,
    pub(crate) exports: Vec<(PathBuf, String, String)>,
    /// Install/confirm states exported for a boot of the real guest.
    pub(crate) guest_exports: Vec<(PathBuf, String, String)>,
    pub(crate) exported_keys: HashSet<String>,
    /// Boot phase: index of the first entry that writes outside BOOT0/BOOT1 (the kernel's);
    /// the entries before it are EFI Boot Guard's.
    pub(crate) loader_end: Option<usize>,
    /// States where the slot not booted was incomplete (shows the root check has teeth).
    pub(crate) other_incomplete: usize,
}

impl Ctx {
    pub(crate) fn inspect(&self, index: usize, image: &Path) -> Result<BootView> {
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

    pub(crate) fn view(&mut self, disk: &Disk, index: usize) -> Result<Rc<BootView>> {
        let key = (index, disk.mirrors[index].key());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let image = self.scratch.join(format!("boot{index}.img"));
        let v = Rc::new(self.inspect(index, &image)?);
        self.cache.insert(key, v.clone());
        Ok(v)
    }

    pub(crate) fn slot_of(&self, env: &BgEnv) -> Option<usize> {
        self.kernel.iter().position(|k| *k == env.kernelfile)
    }

    /// The oracle: problems that make this state unbootable (or the model inconsistent).
    pub(crate) fn check(
        &mut self,
        phase: &str,
        id: &StateId,
        info: &Info,
        disk: &mut Disk,
    ) -> Result<()> {
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

    pub(crate) fn class_of(&self, phase: &str, info: &Info) -> String {
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
    pub(crate) fn agent_check(
        &self,
        disk: &Disk,
        views: &[Rc<BootView>; 2],
        booted: usize,
    ) -> Result<()> {
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
