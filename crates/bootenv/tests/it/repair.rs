//! A damaged copy (bad CRC, a garbage sector, an I/O error on read) is one bad copy among two:
//! it is reported, the good copy is used, and the next write repairs the damaged copy from the
//! good one without ever writing over the good copy first. GRUB's grubenv has a second copy
//! (`grubenv.keel`) for the same purpose.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keel_bootenv::ebg::{BgEnv, BgEnvSet, CopyState, EnvLocation, UState};
use keel_bootenv::grub::{backup_path, GrubEnv, GrubEnvFile};
use keel_bootenv::storage::{FileInfo, SharedStorage, SimStorage, Storage};
use keel_bootenv::uboot::{CopyStatus, FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::BootEnv;

/// The simulated disk, with reads of chosen paths failing with EIO (a bad sector) and a log of
/// every path written.
#[derive(Debug)]
struct FlakyDisk {
    disk: Arc<SimStorage>,
    unreadable: Mutex<Vec<PathBuf>>,
    written: Mutex<Vec<PathBuf>>,
}

impl FlakyDisk {
    fn new(disk: Arc<SimStorage>) -> Arc<FlakyDisk> {
        Arc::new(FlakyDisk {
            disk,
            unreadable: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
        })
    }
    fn fail_reads(&self, path: &str) {
        self.unreadable.lock().unwrap().push(PathBuf::from(path));
    }
    fn heal(&self) {
        self.unreadable.lock().unwrap().clear();
    }
    fn check(&self, path: &Path) -> io::Result<()> {
        if self.unreadable.lock().unwrap().iter().any(|p| p == path) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        Ok(())
    }
    fn log(&self, path: &Path) {
        self.written.lock().unwrap().push(path.to_path_buf());
    }
    fn writes(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.written.lock().unwrap())
    }
}

impl Storage for FlakyDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.check(path)?;
        self.disk.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.check(path)?;
        self.disk.read_at(path, offset, len)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.log(path);
        self.disk.write_file(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.log(path);
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

const EBG: [&str; 2] = ["/boot/BOOT0/BGENV.DAT", "/boot/BOOT1/BGENV.DAT"];

fn ebg_locations() -> Vec<EnvLocation> {
    EBG.iter().map(|p| EnvLocation::File(p.into())).collect()
}

fn ebg_disk() -> (Arc<SimStorage>, Arc<FlakyDisk>) {
    let disk = SimStorage::shared();
    for (i, rev) in [(0usize, 3u32), (1, 2)] {
        let env = BgEnv {
            kernelfile: format!("C:BOOT{i}:linux.efi"),
            revision: rev,
            ..BgEnv::new()
        };
        disk.insert_file(EBG[i], &env.to_bytes().unwrap());
    }
    let flaky = FlakyDisk::new(disk.clone());
    (disk, flaky)
}

/// EBG: copy 1 unreadable (EIO) or with a bad CRC is recorded as invalid; the set still opens,
/// the loader model boots copy 0, an update goes to the damaged copy, and `repair` rewrites it
/// from the running copy without writing copy 0.
#[test]
fn ebg_unreadable_or_corrupt_copy_is_reported_and_repaired() {
    for damage in ["eio", "crc"] {
        let (disk, flaky) = ebg_disk();
        if damage == "eio" {
            flaky.fail_reads(EBG[1]);
        } else {
            let mut bytes = disk.contents(Path::new(EBG[1])).unwrap();
            bytes[600] ^= 0xFF;
            disk.insert_file(EBG[1], &bytes);
        }
        let storage: SharedStorage = flaky.clone();
        let mut set = BgEnvSet::open(storage.clone(), ebg_locations())
            .unwrap_or_else(|e| panic!("{damage}: a damaged copy must not stop the agent: {e}"));
        match &set.copies()[1] {
            CopyState::Invalid(why) => {
                assert!(why.contains("BOOT1"), "{damage}: {why}");
                if damage == "eio" {
                    assert!(why.contains("read failed"), "{why}");
                } else {
                    assert!(why.contains("CRC"), "{why}");
                }
            }
            other => panic!("{damage}: copy 1 should be invalid, is {other:?}"),
        }
        assert_eq!(set.latest_index(), Some(0));
        assert_eq!(
            keel_bootenv::ebg::select_boot(set.copies()).boot_index,
            Some(0)
        );
        flaky.heal();
        let repaired = set.repair().unwrap();
        assert_eq!(repaired, vec![1], "{damage}");
        let writes = flaky.writes();
        assert!(
            writes.iter().all(|p| !p.starts_with("/boot/BOOT0")),
            "{damage}: the good copy was written: {writes:?}"
        );
        let reloaded = BgEnvSet::open(storage.clone(), ebg_locations()).unwrap();
        let copy1 = reloaded.copies()[1].env().expect("copy 1 repaired");
        assert_eq!(copy1.revision, 2, "one below the running copy");
        assert_eq!(
            copy1.kernelfile, "C:BOOT0:linux.efi",
            "a clone of the running copy"
        );
        assert_eq!(copy1.ustate, UState::OK);
        // Repair is idempotent.
        let mut again = reloaded;
        assert!(again.repair().unwrap().is_empty());
        assert!(flaky.writes().is_empty());
    }
}

/// EBG: nothing is repaired while an update is in flight or on trial: the damaged copy is then
/// the in-flight one or the trial's fallback decision belongs to the loader.
#[test]
fn ebg_repair_waits_while_on_trial() {
    let (disk, flaky) = ebg_disk();
    let testing = BgEnv {
        kernelfile: "C:BOOT0:linux.efi".into(),
        revision: 3,
        ustate: UState::TESTING,
        ..BgEnv::new()
    };
    disk.insert_file(EBG[0], &testing.to_bytes().unwrap());
    flaky.fail_reads(EBG[1]);
    let storage: SharedStorage = flaky.clone();
    let mut set = BgEnvSet::open(storage, ebg_locations()).unwrap();
    flaky.heal();
    assert!(set.repair().unwrap().is_empty());
    assert!(flaky.writes().is_empty());
}

const UBOOT: [&str; 2] = ["/boot/uboot.env", "/boot/uboot-redund.env"];

fn uboot_disk() -> (Arc<SimStorage>, Arc<FlakyDisk>, FwEnvConfig) {
    let disk = SimStorage::shared();
    let config = FwEnvConfig::redundant((UBOOT[0], 0), (UBOOT[1], 0), 0x1000);
    for p in UBOOT {
        disk.insert_file(p, &vec![0u8; 0x1000]);
    }
    let mut vars = Vars::new();
    vars.insert(b"keel_slot".to_vec(), b"A".to_vec());
    let shared: SharedStorage = disk.clone();
    UbootEnv::provision(shared, config.clone(), &vars).unwrap();
    let flaky = FlakyDisk::new(disk.clone());
    (disk, flaky, config)
}

/// U-Boot redundant: an unreadable or corrupt copy does not stop `open`; `repair` writes the
/// damaged copy (flags + 1), never the good one, and afterwards both copies are valid.
#[test]
fn uboot_unreadable_or_corrupt_copy_is_reported_and_repaired() {
    for (damage, bad) in [("eio", 0usize), ("eio", 1), ("crc", 0), ("crc", 1)] {
        let (disk, flaky, config) = uboot_disk();
        if damage == "eio" {
            flaky.fail_reads(UBOOT[bad]);
        } else {
            let mut bytes = disk.contents(Path::new(UBOOT[bad])).unwrap();
            bytes[0..512].fill(0xA5); // a garbage sector
            disk.insert_file(UBOOT[bad], &bytes);
        }
        let storage: SharedStorage = flaky.clone();
        let mut env = UbootEnv::open(storage.clone(), config.clone())
            .unwrap_or_else(|e| panic!("{damage} {bad}: {e}"));
        assert!(
            matches!(&env.copies()[bad], CopyStatus::Invalid(why) if why.contains(UBOOT[bad])),
            "{damage} {bad}: {:?}",
            env.copies()
        );
        assert_eq!(env.current_index(), 1 - bad);
        assert_eq!(env.get("keel_slot").as_deref(), Some("A"));
        flaky.heal();
        assert!(env.repair().unwrap(), "{damage} {bad}");
        let writes = flaky.writes();
        assert!(
            writes.iter().all(|p| p == Path::new(UBOOT[bad])),
            "{damage} {bad}: the good copy was written: {writes:?}"
        );
        assert!(!writes.is_empty());
        let reloaded = UbootEnv::open(storage.clone(), config.clone()).unwrap();
        assert!(
            reloaded
                .copies()
                .iter()
                .all(|c| matches!(c, CopyStatus::Valid { .. })),
            "{damage} {bad}: {:?}",
            reloaded.copies()
        );
        assert_eq!(reloaded.current_index(), bad, "the repaired copy is newer");
        assert_eq!(reloaded.get("keel_slot").as_deref(), Some("A"));
        let mut again = reloaded;
        assert!(!again.repair().unwrap());
    }
}

const GRUBENV: &str = "/boot/efi/EFI/BOOT/grubenv";

fn grub_disk() -> (Arc<SimStorage>, Arc<FlakyDisk>) {
    let disk = SimStorage::shared();
    let flaky = FlakyDisk::new(disk.clone());
    let storage: SharedStorage = flaky.clone();
    let mut env = GrubEnvFile::open_redundant(storage, GRUBENV).unwrap();
    for (k, v) in [
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "0"),
        ("B_OK", "0"),
    ] {
        env.set(k, v).unwrap();
    }
    env.commit().unwrap();
    flaky.writes();
    (disk, flaky)
}

/// GRUB: both copies are written on commit (backup first); a garbage sector in the main block,
/// an unreadable main block or a main block without any bootable slot makes `open_redundant`
/// take the backup and report why; the next commit repairs the main block.
#[test]
fn grub_damaged_main_block_falls_back_to_the_backup_and_is_repaired() {
    let backup = backup_path(Path::new(GRUBENV));
    assert_eq!(backup, Path::new("/boot/efi/EFI/BOOT/grubenv.keel"));
    for damage in ["garbage sector", "eio", "no bootable slot", "missing"] {
        let (disk, flaky) = grub_disk();
        let good = disk.contents(Path::new(GRUBENV)).unwrap();
        assert_eq!(disk.contents(&backup).unwrap(), good, "backup written");
        match damage {
            "garbage sector" => {
                let mut bytes = good.clone();
                bytes[..512].fill(0xA5);
                disk.insert_file(GRUBENV, &bytes);
                assert!(
                    GrubEnv::parse_like_grub(&bytes).is_err(),
                    "GRUB would fail too"
                );
            }
            "eio" => flaky.fail_reads(GRUBENV),
            "no bootable slot" => {
                let mut env = GrubEnv::new();
                env.set_bytes(b"ORDER", b"A B");
                disk.insert_file(GRUBENV, &env.to_bytes().unwrap());
            }
            _ => {
                disk.remove(Path::new(GRUBENV)).unwrap();
            }
        }
        let storage: SharedStorage = flaky.clone();
        let mut env = GrubEnvFile::open_redundant(storage.clone(), GRUBENV)
            .unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert!(env.from_backup(), "{damage}");
        assert_eq!(env.get("A_OK").as_deref(), Some("1"), "{damage}");
        assert_eq!(env.problems().len(), 1, "{damage}: {:?}", env.problems());
        assert!(env.problems()[0].contains(GRUBENV), "{:?}", env.problems());
        flaky.heal();
        env.commit().unwrap();
        let writes = flaky.writes();
        assert!(
            writes
                .first()
                .is_some_and(|p| p.to_string_lossy().starts_with(&*backup.to_string_lossy())),
            "{damage}: backup first: {writes:?}"
        );
        assert_eq!(disk.contents(Path::new(GRUBENV)).unwrap(), good, "{damage}");
        let healed = GrubEnvFile::open_redundant(storage, GRUBENV).unwrap();
        assert!(!healed.from_backup() && healed.problems().is_empty());
    }
}

/// GRUB's `load_env` keeps the variables before a broken line; keel's strict parser refuses
/// the block, `parse_like_grub` reads what GRUB reads and says what is broken.
#[test]
fn grub_partial_block_reads_like_grub() {
    let mut env = GrubEnv::new();
    env.set_bytes(b"ORDER", b"B A");
    env.set_bytes(b"B_OK", b"1");
    let mut bytes = env.to_bytes().unwrap();
    let tail = bytes.len() - 100;
    bytes[tail..].fill(b'x'); // garbage after the padding's line: a line without '='
    bytes[tail] = b'\n';
    assert!(GrubEnv::parse(&bytes).is_err());
    let (read, damage) = GrubEnv::parse_like_grub(&bytes).unwrap();
    assert_eq!(read.get_bytes(b"B_OK"), Some(b"1".as_slice()));
    assert!(damage.unwrap().contains("without '='"));
    bytes[..4].copy_from_slice(b"XXXX");
    assert!(GrubEnv::parse_like_grub(&bytes).is_err(), "bad signature");
}

/// Both grubenv copies unusable: an error naming both, not a silent empty environment.
#[test]
fn grub_both_copies_damaged_is_an_error_naming_both() {
    let (disk, _flaky) = grub_disk();
    disk.insert_file(GRUBENV, &[0xA5; 1024]);
    disk.insert_file(backup_path(Path::new(GRUBENV)), &[0x5A; 1024]);
    let storage: SharedStorage = disk.clone();
    let err = GrubEnvFile::open_redundant(storage, GRUBENV).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("grubenv:") && text.contains("grubenv.keel"),
        "{text}"
    );
}

/// A power cut at every storage operation of a two-copy grubenv commit, in every disk model:
/// afterwards `open_redundant` reads the old or the new state, never an error, and the copy it
/// reads names a bootable slot.
#[test]
fn grub_two_copy_commit_survives_every_power_cut() {
    use keel_bootenv::storage::CutMode;
    let commit = |storage: SharedStorage| {
        let mut env = GrubEnvFile::open_redundant(storage, GRUBENV).unwrap();
        env.set("ORDER", "B A").unwrap();
        env.set("B_OK", "1").unwrap();
        env.commit()
    };
    let (_, flaky) = grub_disk();
    let reference: SharedStorage = flaky.clone();
    let start = flaky.disk.ops_done();
    commit(reference).unwrap();
    let total = flaky.disk.ops_done() - start;
    assert_eq!(
        total, 8,
        "two replace_file: write, fsync, rename, fsync dir each"
    );
    let mut tried = 0;
    for n in 0..=total {
        for mode in CutMode::ALL {
            let (disk, _) = grub_disk();
            let storage: SharedStorage = disk.clone();
            disk.arm_power_cut(n);
            let result = commit(storage.clone());
            assert_eq!(result.is_err(), n < total, "cut after {n}, {mode:?}");
            disk.power_cycle(mode);
            let env = GrubEnvFile::open_redundant(storage, GRUBENV)
                .unwrap_or_else(|e| panic!("cut after {n}, {mode:?}: {e}"));
            let order = env.get("ORDER");
            let state = (
                order.as_deref(),
                env.get("B_OK").as_deref().map(str::to_owned),
            );
            assert!(
                state == (Some("A B"), Some("0".into()))
                    || state == (Some("B A"), Some("1".into())),
                "cut after {n}, {mode:?}: {state:?}"
            );
            if n == total {
                assert_eq!(
                    order.as_deref(),
                    Some("B A"),
                    "a finished commit is durable"
                );
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 36);
}
