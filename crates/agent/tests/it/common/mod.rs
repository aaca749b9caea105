//! A device on real files in a temporary directory: slot files, two BGENV.DAT copies, a
//! kernel command line file, a release signer and bundles from keel-testkit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_bootenv::ebg::{BgEnv, BgEnvSet, EnvLocation};
use keel_bootenv::storage::FsStorage;
use keel_testkit::bundle::signed_bundle;
pub use keel_testkit::data::image;
use keel_testkit::pki::{Identity, Pki};

pub const SLOT_SIZE: usize = 256 * 1024;

pub struct FileDevice {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The release signer (`cert.pem`, `key.pem` in the device directory; the agent trusts it).
    pub signer: Identity,
}

impl FileDevice {
    /// A device with EFI Boot Guard (two BGENV.DAT copies written by keel-bootenv).
    pub fn new() -> FileDevice {
        Self::with_bootloader(
            "[bootloader]\ntype = \"ebg\"\nenv = [\"{d}/BOOT0/BGENV.DAT\", \"{d}/BOOT1/BGENV.DAT\"]\n",
            |_| {},
        )
    }

    /// A device whose `[bootloader]` section is `bootloader` (`{d}` = the device directory),
    /// after `setup(dir)` created the environment files.
    pub fn with_bootloader(bootloader: &str, setup: impl FnOnce(&Path)) -> FileDevice {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let signer = Pki::in_dir(p)
            .cert("release")
            .subject("/CN=keel-release")
            .files("cert.pem", "key.pem")
            .self_signed();
        for slot in ["a", "b"] {
            std::fs::write(p.join(format!("rootfs-{slot}.img")), vec![0u8; SLOT_SIZE]).unwrap();
        }
        std::fs::create_dir_all(p.join("BOOT0")).unwrap();
        std::fs::create_dir_all(p.join("BOOT1")).unwrap();
        let locations: Vec<EnvLocation> = ["BOOT0", "BOOT1"]
            .iter()
            .map(|d| EnvLocation::in_dir(p.join(d)))
            .collect();
        for (i, revision) in [(0usize, 2u32), (1, 1)] {
            let env = BgEnv {
                kernelfile: format!("C:BOOT{i}:linux.efi"),
                kernelparams: format!("root=/dev/sda{} keel.slot={}", 4 + i, ["A", "B"][i]),
                revision,
                watchdog_timeout_sec: 30,
                ..BgEnv::new()
            };
            std::fs::write(locations[i].path(), env.to_bytes().unwrap()).unwrap();
        }
        std::fs::write(p.join("cmdline"), "root=/dev/sda4 keel.slot=A\n").unwrap();
        std::fs::write(p.join("boot_id"), "boot-1\n").unwrap();
        setup(p);
        let bootloader = bootloader.replace("{d}", &p.display().to_string());
        let config = format!(
            r#"state_dir = "{d}/state"
trusted_certs = "{d}/cert.pem"
cmdline_path = "{d}/cmdline"
boot_id_path = "{d}/boot_id"

{bootloader}

[slots.A]
targets = {{ rootfs = "{d}/rootfs-a.img" }}
kernelfile = "C:BOOT0:linux.efi"
kernelparams = "root=/dev/sda4 keel.slot=A"

[slots.B]
targets = {{ rootfs = "{d}/rootfs-b.img" }}
kernelfile = "C:BOOT1:linux.efi"
kernelparams = "root=/dev/sda5 keel.slot=B"
"#,
            d = p.display()
        );
        let config_path = p.join("agent.toml");
        std::fs::write(&config_path, config).unwrap();
        FileDevice {
            config_path,
            signer,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A signed bundle with one rootfs image (`size` bytes).
    pub fn bundle(&self, version: &str, data: &[u8]) -> Vec<u8> {
        let manifest = format!(
            "[software]\nversion = \"{version}\"\n[[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"rootfs\"\ntype = \"raw\"\n"
        );
        signed_bundle(&self.signer, &manifest, &[("rootfs.img", data)])
    }

    /// Power-on with the EFI Boot Guard loader model on the real files; the "kernel" gets the
    /// chosen copy's kernelparams as its command line.
    pub fn reboot(&self, n: u32) -> String {
        let p = self.dir.path();
        let locations = ["BOOT0", "BOOT1"]
            .iter()
            .map(|d| EnvLocation::in_dir(p.join(d)))
            .collect();
        let mut set = BgEnvSet::open(FsStorage::shared(), locations).unwrap();
        let decision = set.simulate_boot().unwrap();
        let env = decision.booted.expect("a bootable config");
        std::fs::write(p.join("cmdline"), format!("{}\n", env.kernelparams)).unwrap();
        std::fs::write(p.join("boot_id"), format!("boot-{n}\n")).unwrap();
        env.kernelparams
    }

    /// `keel-agent install -` with `bundle` on its standard input.
    pub fn install_stdin(&self, bundle: &[u8]) -> std::process::Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .agent_cmd()
            .args(["install", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = bundle.to_vec();
        let writer = std::thread::spawn(move || {
            // The agent may stop reading early on errors; a broken pipe is fine then.
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    pub fn agent_cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel-agent"));
        cmd.arg("-c").arg(&self.config_path);
        cmd
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self
            .agent_cmd()
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}
