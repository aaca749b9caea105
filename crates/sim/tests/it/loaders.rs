//! Faithful loader models under double faults, and the agent's robustness against damaged
//! environment copies:
//!
//! * an install cut at every storage operation (four disk models), followed by a cut at every
//!   point of the next boot's own environment write (four disk models plus a garbage sector
//!   where the in-place write was in flight): every boot starts a complete slot, and the agent
//!   installs again afterwards (GRUB, U-Boot, EFI Boot Guard);
//! * GRUB: neither grubenv copy usable → the rescue entry, never a slot; a torn main block is
//!   read from grubenv.keel, reported and repaired;
//! * U-Boot `bootlimit = 0` never falls back (U-Boot's own rule);
//! * EFI Boot Guard / U-Boot: an unreadable (EIO) or corrupt copy is reported and repaired
//!   without stopping the agent;
//! * `verify_after_write`: an install with read-back, and a device that loses a write after
//!   acknowledging its fsync (never activated).

use crate::common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{starts_with, Fixture};
use keel_agent::{Agent, Environment, InstallOptions, SlotId};
use keel_bootenv::grub::backup_path;
use keel_bootenv::storage::{FileInfo, SimStorage, Storage};
use keel_sim::{CutMode, Loader, SimDevice, SimError, EBG_ENV, GRUBENV, UBOOT_ENV};

const TARGETS: [&str; 2] = ["rootfs", "kernel"];

/// What the disk keeps of the loader's in-flight env write: one of the four cut modes, or the
/// sector being written turned to garbage (what a cut during an in-place write of real flash
/// or a disk without atomic sectors can leave).
#[derive(Debug, Clone, Copy)]
enum BootFault {
    Mode(CutMode),
    GarbageSector,
}

fn boot_faults() -> Vec<BootFault> {
    CutMode::ALL
        .into_iter()
        .map(BootFault::Mode)
        .chain([BootFault::GarbageSector])
        .collect()
}

/// An exact copy of a (powered, synced) simulated disk.
fn clone_disk(disk: &SimStorage) -> Arc<SimStorage> {
    let copy = SimStorage::shared();
    for path in disk.paths() {
        let data = disk.contents(&path).unwrap_or_default();
        match disk.metadata(&path) {
            Ok(FileInfo { regular: false, .. }) => copy.insert_device(path, &data),
            _ => copy.insert_file(path, &data),
        }
    }
    copy
}

fn install(device: &SimDevice, bundle: &[u8]) -> Result<(), String> {
    let mut agent = device.agent().map_err(|e| e.to_string())?;
    agent
        .install(
            bundle,
            InstallOptions {
                chunk_size: Some(32 * 1024),
                ..Default::default()
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Images {
    rootfs: Vec<u8>,
    kernel: Vec<u8>,
}

impl Images {
    fn holds(&self, device: &SimDevice, slot: SlotId) -> bool {
        starts_with(&device.slot_contents(slot, "rootfs"), &self.rootfs)
            && starts_with(&device.slot_contents(slot, "kernel"), &self.kernel)
    }
}

/// The booted slot holds, in every target, its content from before the install or the new
/// image: never a mix, never a torn image.
fn assert_complete(
    device: &SimDevice,
    slot: SlotId,
    before: &[(SlotId, &str, Vec<u8>)],
    new: &Images,
    what: &str,
) {
    let unchanged = before
        .iter()
        .filter(|(s, _, _)| *s == slot)
        .all(|(s, t, data)| device.slot_contents(*s, t) == *data);
    assert!(
        unchanged || new.holds(device, slot),
        "{what}: booted slot {slot} holds a torn image"
    );
}

/// The double-fault sweep of one loader and one starting point (`from_b`: the install runs on
/// slot B, after a confirmed update, so its target is the factory slot A). Returns the number
/// of (install cut, mode, boot cut, fault) combinations and how many of them booted from
/// GRUB's second copy (grubenv.keel) at least once.
fn double_fault_sweep(loader: Loader, from_b: bool) -> (usize, usize) {
    let fx = Fixture::new();
    let (first, _, _) = fx.update("2.0", 100, false);
    let (second, rootfs2, kernel2) = fx.update("2.1", 200, true);
    let (third, rootfs3, kernel3) = fx.update("2.2", 300, false);
    let new = Images {
        rootfs: rootfs2,
        kernel: kernel2,
    };
    let latest = Images {
        rootfs: rootfs3,
        kernel: kernel3,
    };
    let setup = || {
        let mut d = fx.device(loader);
        if from_b {
            install(&d, &first).unwrap();
            assert_eq!(d.boot().unwrap().slot, SlotId::B);
            d.agent().unwrap().confirm(None).unwrap();
        }
        d
    };
    // Length of the install without a cut.
    let reference = setup();
    let (result, install_ops) = reference.count_ops(|| install(&reference, &second));
    result.unwrap();
    let mut tried = 0;
    let mut from_backup = 0;
    for n in 0..=install_ops {
        for mode in CutMode::ALL {
            let mut device = setup();
            let before: Vec<(SlotId, &str, Vec<u8>)> = [SlotId::A, SlotId::B]
                .into_iter()
                .flat_map(|s| TARGETS.map(|t| (s, t)))
                .map(|(s, t)| (s, t, device.slot_contents(s, t)))
                .collect();
            let (_, cut) = device.with_power_cut(n, mode, |d| install(d, &second));
            if !cut {
                device.storage.power_cycle(mode);
            }
            let after_install = clone_disk(&device.storage);
            // The next boot's env write, cut at every point (measured on this very state).
            device.storage = clone_disk(&after_install);
            let before_boot = device.storage.ops_done();
            let _ = device.boot();
            let boot_ops = device.storage.ops_done() - before_boot;
            for m in 0..=boot_ops {
                for fault in boot_faults() {
                    if m == boot_ops && matches!(fault, BootFault::GarbageSector) {
                        continue; // no write in flight to garble
                    }
                    let what = format!(
                        "{loader:?} install from {} cut after {n}/{install_ops} ops ({mode:?}), next boot cut after {m}/{boot_ops} ({fault:?})",
                        if from_b { "B" } else { "A" }
                    );
                    device.storage = clone_disk(&after_install);
                    let boots = device.history.len();
                    double_fault_case(&mut device, m, fault, &before, &new, &latest, &third, &what);
                    tried += 1;
                    if device.history[boots..]
                        .iter()
                        .any(|b| b.action.contains("grubenv.keel"))
                    {
                        from_backup += 1;
                    }
                }
            }
        }
    }
    (tried, from_backup)
}

#[allow(clippy::too_many_arguments)]
fn double_fault_case(
    device: &mut SimDevice,
    m: u64,
    fault: BootFault,
    before: &[(SlotId, &str, Vec<u8>)],
    new: &Images,
    latest: &Images,
    third: &[u8],
    what: &str,
) {
    let trace_len = device.storage.trace().len();
    device.storage.arm_power_cut(m);
    let first = device.boot();
    if device.storage.is_dark() {
        // The cut hit the loader's own env write: resolve it, then power on again.
        let in_flight = device
            .storage
            .trace()
            .get(trace_len..)
            .and_then(|t| t.last().filter(|op| op.starts_with("write_at ")).cloned());
        match fault {
            BootFault::Mode(mode) => device.storage.power_cycle(mode),
            BootFault::GarbageSector => {
                device.storage.power_cycle(CutMode::KeepUnsynced);
                if let Some(op) = in_flight {
                    garble_sector(&device.storage, &op);
                }
            }
        }
    } else {
        device.storage.arm_power_cut(u64::MAX);
        let boot = first.unwrap_or_else(|e| panic!("{what}: first boot: {e}"));
        assert_complete(device, boot.slot, before, new, what);
    }
    // Power on (again): a complete slot, and the agent is in charge.
    let boot = device
        .boot()
        .unwrap_or_else(|e| panic!("{what}: boot after the faults: {e}"));
    assert_complete(device, boot.slot, before, new, what);
    let mut agent = device
        .agent()
        .unwrap_or_else(|e| panic!("{what}: agent: {e}"));
    let status = agent
        .status()
        .unwrap_or_else(|e| panic!("{what}: status: {e}"));
    assert_eq!(status.booted_slot, boot.slot, "{what}");
    // And the device can still be updated: confirm whatever booted, install, boot the new
    // version, confirm it.
    device
        .agent()
        .and_then(|mut a| a.confirm(None))
        .unwrap_or_else(|e| panic!("{what}: confirm: {e}"));
    install(device, third).unwrap_or_else(|e| panic!("{what}: the next install failed: {e}"));
    let updated = device
        .boot()
        .unwrap_or_else(|e| panic!("{what}: boot of the next update: {e}"));
    assert_eq!(
        updated.slot,
        boot.slot.other(),
        "{what}: next update not booted"
    );
    assert!(
        latest.holds(device, updated.slot),
        "{what}: next update incomplete"
    );
    device
        .agent()
        .and_then(|mut a| a.confirm(None))
        .unwrap_or_else(|e| panic!("{what}: confirm of the next update: {e}"));
}

/// `write_at <path> @<offset>+<len>` (the storage trace): the first 512-byte sector written
/// becomes garbage.
fn garble_sector(disk: &SimStorage, op: &str) {
    let rest = op.trim_start_matches("write_at ");
    let Some((path, range)) = rest.rsplit_once(" @") else {
        return;
    };
    let offset: usize = range
        .split('+')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let path = PathBuf::from(path);
    let Some(mut data) = disk.contents(&path) else {
        return;
    };
    let end = (offset + 512).min(data.len());
    if let Some(sector) = data.get_mut(offset..end) {
        sector.fill(0xA5);
    }
    let device = matches!(disk.metadata(&path), Ok(FileInfo { regular: false, .. }));
    if device {
        disk.insert_device(path, &data);
    } else {
        disk.insert_file(path, &data);
    }
}

#[test]
fn grub_double_fault_install_from_b() {
    let (tried, from_backup) = double_fault_sweep(Loader::Grub, true);
    println!("GRUB, install from B: {tried} double-fault combinations ({from_backup} booted from grubenv.keel), every boot a complete slot, every device updated again");
    assert!(tried > 500, "{tried}");
    assert!(
        from_backup > 0,
        "the garbage sectors must have sent some boots to grubenv.keel"
    );
}

#[test]
fn grub_double_fault_install_from_a() {
    let (tried, from_backup) = double_fault_sweep(Loader::Grub, false);
    println!("GRUB, install from A: {tried} double-fault combinations ({from_backup} booted from grubenv.keel), every boot a complete slot, every device updated again");
    assert!(tried > 500, "{tried}");
    assert!(
        from_backup > 0,
        "the garbage sectors must have sent some boots to grubenv.keel"
    );
}

#[test]
fn uboot_double_fault_install_from_b() {
    let (tried, _) = double_fault_sweep(Loader::Uboot, true);
    println!("U-Boot, install from B: {tried} double-fault combinations, every boot a complete slot, every device updated again");
    assert!(tried > 300, "{tried}");
}

#[test]
fn ebg_double_fault_install_from_b() {
    let (tried, _) = double_fault_sweep(Loader::Ebg, true);
    println!("EFI Boot Guard, install from B: {tried} double-fault combinations, every boot a complete slot, every device updated again");
    assert!(tried > 300, "{tried}");
}

/// GRUB: the loader's in-place save_env leaves a garbage sector in grubenv. The next boot
/// reads grubenv.keel (the loader model says so), the agent reports the damage in `status`,
/// and the confirm rewrites grubenv from the good copy.
#[test]
fn grub_torn_main_block_is_read_from_the_backup_reported_and_repaired() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Grub);
    let (bundle, rootfs, _) = fx.update("2.0", 100, false);
    install(&device, &bundle).unwrap();
    let main = Path::new(GRUBENV);
    let mut torn = device.storage.contents(main).unwrap();
    torn[..512].fill(0xA5);
    device.storage.insert_file(main, &torn);
    let boot = device.boot().unwrap();
    assert_eq!(boot.slot, SlotId::B, "the activation is in grubenv.keel");
    assert!(boot.action.contains("grubenv.keel"), "{}", boot.action);
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.booted_slot, SlotId::B);
    assert_eq!(status.state, "testing");
    let damage = &status.bootloader_details["grubenv_damaged"];
    assert!(
        damage.contains("grubenv") && damage.contains("using grubenv.keel"),
        "{damage}"
    );
    device.agent().unwrap().confirm(None).unwrap();
    let repaired = device.storage.contents(main).unwrap();
    assert!(repaired.starts_with(b"# GRUB Environment Block\n"));
    assert_eq!(
        repaired,
        device.storage.contents(&backup_path(main)).unwrap()
    );
    let status = device.agent().unwrap().status().unwrap();
    assert!(!status.bootloader_details.contains_key("grubenv_damaged"));
    assert_eq!(status.state, "idle");
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
}

/// GRUB: with neither copy usable the loader boots its rescue entry, never a slot (slot A may
/// be half written).
#[test]
fn grub_without_a_usable_copy_boots_rescue_not_a_slot() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Grub);
    device.storage.insert_file(GRUBENV, &[0xA5; 1024]);
    let backup = backup_path(Path::new(GRUBENV));
    let mut no_slot = b"# GRUB Environment Block\nORDER=A B\n".to_vec();
    no_slot.resize(1024, b'#');
    device.storage.insert_file(&backup, &no_slot);
    match device.boot() {
        Err(SimError::Rescue(why)) => {
            assert!(why.contains("grubenv:"), "{why}");
            assert!(why.contains("grubenv.keel: no bootable slot"), "{why}");
        }
        other => panic!("expected the rescue entry, got {other:?}"),
    }
    // The agent refuses to guess either: it names both copies.
    let err = device.agent().unwrap().status().unwrap_err().to_string();
    assert!(err.contains("grubenv.keel"), "{err}");
}

/// U-Boot runs altbootcmd only `if (bootlimit && bootcount > bootlimit)`: with bootlimit 0 an
/// unconfirmed trial boots again and again; the agent's view agrees (next boot: the trial slot).
#[test]
fn uboot_bootlimit_zero_never_falls_back() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Uboot);
    let (bundle, _, _) = fx.update("2.0", 100, false);
    install(&device, &bundle).unwrap();
    let shared = device.shared_storage();
    let config =
        keel_bootenv::uboot::FwEnvConfig::load(shared.as_ref(), Path::new(keel_sim::UBOOT_CONFIG))
            .unwrap();
    let mut env = keel_bootenv::uboot::UbootEnv::open(shared, config).unwrap();
    keel_bootenv::BootEnv::set(&mut env, "bootlimit", "0").unwrap();
    keel_bootenv::BootEnv::commit(&mut env).unwrap();
    for boot in 1..=3 {
        let record = device.boot().unwrap();
        assert_eq!(record.slot, SlotId::B, "boot {boot}: {}", record.action);
        assert_eq!(record.action, format!("bootcmd (trial {boot})"));
        let status = device.agent().unwrap().status().unwrap();
        assert_eq!(status.next_boot, Some(SlotId::B), "boot {boot}");
    }
}

/// The simulated disk with reads of chosen paths failing with EIO.
#[derive(Debug)]
struct Flaky {
    disk: Arc<SimStorage>,
    unreadable: Vec<PathBuf>,
}

impl Flaky {
    fn check(&self, path: &Path) -> io::Result<()> {
        if self.unreadable.iter().any(|p| p == path) {
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }
}

impl Storage for Flaky {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.check(path)?;
        self.disk.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.check(path)?;
        self.disk.read_at(path, offset, len)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.disk.write_file(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.write_at(path, offset, data)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.disk.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.disk.remove(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        self.disk.metadata(path)
    }
}

/// EFI Boot Guard and U-Boot: one env copy unreadable (EIO) or with a garbage sector. The agent
/// still installs, `status` names the bad copy, the device boots the update, and the confirm
/// repairs the copy without touching the good one first.
#[test]
fn damaged_env_copy_is_reported_and_repaired_by_the_agent() {
    for loader in [Loader::Ebg, Loader::Uboot] {
        for eio in [true, false] {
            let what = format!("{loader:?}, {}", if eio { "EIO" } else { "garbage sector" });
            let fx = Fixture::new();
            let mut device = fx.device(loader);
            // The copy the running system does not depend on: EBG copy 1 (slot B's config,
            // older), U-Boot's redundant copy 1 (copy 0 is current after provisioning).
            let bad = PathBuf::from(match loader {
                Loader::Ebg => EBG_ENV[1],
                _ => UBOOT_ENV[1],
            });
            let flaky: Arc<dyn Storage> = if eio {
                Arc::new(Flaky {
                    disk: device.storage.clone(),
                    unreadable: vec![bad.clone()],
                })
            } else {
                let mut data = device.storage.contents(&bad).unwrap();
                data[..512].fill(0xA5);
                device.storage.insert_file(&bad, &data);
                device.storage.clone()
            };
            let config = device.config.clone();
            let agent = |storage: &Arc<dyn Storage>| {
                Agent::new(config.clone(), storage.clone(), Environment::Storage).unwrap()
            };
            let status = agent(&flaky)
                .status()
                .unwrap_or_else(|e| panic!("{what}: status: {e}"));
            let reported = status
                .bootloader_details
                .values()
                .any(|v| v.contains("invalid") && v.contains(bad.to_str().unwrap()));
            assert!(reported, "{what}: {:?}", status.bootloader_details);
            let (bundle, rootfs, _) = fx.update("2.0", 100, false);
            agent(&flaky)
                .install(&bundle[..], InstallOptions::default())
                .unwrap_or_else(|e| panic!("{what}: install: {e}"));
            // The loader reads the same disk (an EIO on a read is the agent's problem only
            // until the copy is rewritten, which the install just did for the bad copy).
            let boot = device.boot().unwrap();
            assert_eq!(boot.slot, SlotId::B, "{what}");
            assert!(starts_with(
                &device.slot_contents(SlotId::B, "rootfs"),
                &rootfs
            ));
            let disk: Arc<dyn Storage> = device.storage.clone();
            agent(&disk)
                .confirm(None)
                .unwrap_or_else(|e| panic!("{what}: confirm: {e}"));
            let status = agent(&disk).status().unwrap();
            assert!(
                status
                    .bootloader_details
                    .values()
                    .all(|v| !v.contains("invalid")),
                "{what}: still damaged after confirm: {:?}",
                status.bootloader_details
            );
            assert_eq!(status.state, "idle", "{what}");
        }
    }
}

/// A disk that "loses" a written slot region after acknowledging its fsync: `drop_cache` (the
/// read-back's first step) flips a byte of the chosen target, as flash that lies about fsync
/// would show once the cache is gone. Everything else is the simulated disk.
#[derive(Debug)]
struct LyingFlash {
    disk: Arc<SimStorage>,
    target: PathBuf,
    dropped: Mutex<Vec<PathBuf>>,
}

impl Storage for LyingFlash {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.disk.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.disk.read_at(path, offset, len)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.disk.write_file(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.write_at(path, offset, data)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.disk.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.disk.remove(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        self.disk.metadata(path)
    }
    fn drop_cache(&self, path: &Path) -> io::Result<()> {
        self.dropped.lock().unwrap().push(path.to_path_buf());
        if path == self.target {
            let mut data = self.disk.contents(path).unwrap_or_default();
            if let Some(b) = data.get_mut(70_000) {
                *b ^= 0x01;
            }
            self.disk.insert_device(path, &data);
        }
        Ok(())
    }
}

/// `verify_after_write`: with honest storage the install reads every target back (its cache
/// dropped first) and activates; with storage that loses a write after the fsync, the install
/// fails naming the target and both hashes, and the slot is never activated.
#[test]
fn verify_after_write_reads_back_and_refuses_a_lost_write() {
    let fx = Fixture::new();
    let (bundle, rootfs, kernel) = fx.update("2.0", 100, false);
    for lying in [false, true] {
        let mut device = fx.device(Loader::Ebg);
        device.config.verify_after_write = true;
        let target = keel_sim::slot_path(SlotId::B, "rootfs");
        let flash = Arc::new(LyingFlash {
            disk: device.storage.clone(),
            target: if lying {
                target.clone()
            } else {
                PathBuf::from("/nowhere")
            },
            dropped: Mutex::new(Vec::new()),
        });
        let mut agent =
            Agent::new(device.config.clone(), flash.clone(), Environment::Storage).unwrap();
        let result = agent.install(&bundle[..], InstallOptions::default());
        let dropped = flash.dropped.lock().unwrap().clone();
        assert!(
            dropped.contains(&target),
            "lying={lying}: read-back of rootfs"
        );
        if lying {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("verify_after_write"), "{err}");
            assert!(err.contains(target.to_str().unwrap()), "{err}");
            assert!(err.contains("not activated"), "{err}");
            assert_eq!(device.boot().unwrap().slot, SlotId::A, "never activated");
        } else {
            result.unwrap();
            assert!(dropped.contains(&keel_sim::slot_path(SlotId::B, "kernel")));
            let boot = device.boot().unwrap();
            assert_eq!(boot.slot, SlotId::B);
            assert!(starts_with(
                &device.slot_contents(SlotId::B, "rootfs"),
                &rootfs
            ));
            assert!(starts_with(
                &device.slot_contents(SlotId::B, "kernel"),
                &kernel
            ));
        }
    }
    // Off (the default): no read-back at all.
    let device = fx.device(Loader::Ebg);
    let flash = Arc::new(LyingFlash {
        disk: device.storage.clone(),
        target: keel_sim::slot_path(SlotId::B, "rootfs"),
        dropped: Mutex::new(Vec::new()),
    });
    let mut agent = Agent::new(device.config.clone(), flash.clone(), Environment::Storage).unwrap();
    agent
        .install(&bundle[..], InstallOptions::default())
        .unwrap();
    assert!(flash.dropped.lock().unwrap().is_empty());
}

/// EFI Boot Guard numbers the config copies in the order the firmware enumerates the volumes.
/// With BOOT1 enumerated first, install, test boot, confirm and rollback behave the same, and
/// after a repair that ties the revisions (both copies identical) the same slot boots.
#[test]
fn ebg_volume_order_does_not_change_the_outcome() {
    let fx = Fixture::new();
    let (bundle, rootfs, _) = fx.update("2.0", 100, false);
    for order in [[0, 1], [1, 0]] {
        let what = format!("volume order {order:?}");
        // Update, test boot, confirm.
        let mut device = fx.device(Loader::Ebg);
        device.ebg_volume_order = order;
        install(&device, &bundle).unwrap();
        let boot = device.boot().unwrap();
        assert_eq!(boot.slot, SlotId::B, "{what}: {}", boot.action);
        assert!(starts_with(
            &device.slot_contents(SlotId::B, "rootfs"),
            &rootfs
        ));
        device.agent().unwrap().confirm(None).unwrap();
        assert_eq!(device.boot().unwrap().slot, SlotId::B, "{what}");
        // Unconfirmed: rolled back whatever the order.
        let mut device = fx.device(Loader::Ebg);
        device.ebg_volume_order = order;
        install(&device, &bundle).unwrap();
        assert_eq!(device.boot().unwrap().slot, SlotId::B, "{what}");
        let back = device.boot().unwrap();
        assert_eq!(back.slot, SlotId::A, "{what}: {}", back.action);
        // A garbage copy 1 at revision 1 vs copy 0 at revision 2: the repair writes a clone
        // with revision 1 (one below); with copy 0 at revision 1 it would tie, identical.
        let mut device = fx.device(Loader::Ebg);
        device.ebg_volume_order = order;
        device.storage.insert_file(EBG_ENV[1], &[0xA5; 4096]);
        assert_eq!(device.boot().unwrap().slot, SlotId::A, "{what}");
        device.agent().unwrap().confirm(None).unwrap();
        let copies = device.ebg_copies();
        assert!(
            copies.iter().all(Option::is_some),
            "{what}: repaired: {copies:?}"
        );
        assert_eq!(device.boot().unwrap().slot, SlotId::A, "{what}");
    }
}
