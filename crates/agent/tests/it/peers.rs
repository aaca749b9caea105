//! The agent's environment writes read back by the real tools, and the real tools' writes (as
//! the bootloader would make them) understood by the agent: EFI Boot Guard (`bg_printenv`,
//! `bg_setenv`), U-Boot (`mkenvimage`, `fw_printenv`, `fw_setenv`) and GRUB (`grub-editenv`).
//! The tools come from Debian (scripts/setup-debian.sh); a missing tool fails the test.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{image, FileDevice};
use keel_agent::{Agent, Config, InstallOptions};

fn tool(program: &str, args: &[&str]) -> String {
    let out = keel_testkit::cmd::run_ok(Command::new(program).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn agent(device: &FileDevice) -> Agent {
    Agent::open_os(Config::load(&device.config_path).unwrap()).unwrap()
}

fn install(device: &FileDevice) {
    let bundle = device.bundle("2.0", &image(11, 100_000));
    agent(device)
        .install(&bundle[..], InstallOptions::default())
        .unwrap();
}

fn boot_into(device: &FileDevice, slot: &str, n: u32) {
    std::fs::write(device.path("cmdline"), format!("keel.slot={slot}\n")).unwrap();
    std::fs::write(device.path("boot_id"), format!("boot-{n}\n")).unwrap();
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

#[test]
fn ebg_environment_matches_bg_printenv_and_bg_setenv() {
    let device = FileDevice::new();
    install(&device);
    let env1 = device.path("BOOT1/BGENV.DAT");
    let env1 = env1.to_str().unwrap();
    let printed = tool("bg_printenv", &["-f", env1, "-r"]);
    for line in [
        "REVISION=3",
        "USTATE=1",
        "IN_PROGRESS=0",
        "KERNEL=C:BOOT1:linux.efi",
    ] {
        assert!(has_line(&printed, line), "{line} not in:\n{printed}");
    }
    let booted = tool(
        "bg_printenv",
        &["-f", device.path("BOOT0/BGENV.DAT").to_str().unwrap(), "-r"],
    );
    assert!(
        has_line(&booted, "REVISION=2") && has_line(&booted, "USTATE=0"),
        "{booted}"
    );

    // The loader's first boot, done by the real tool: INSTALLED -> TESTING.
    tool("bg_setenv", &["-f", env1, "-P", "-s", "TESTING"]);
    boot_into(&device, "B", 2);
    let status = agent(&device).status().unwrap();
    assert_eq!(
        (status.state, status.ustate.as_str()),
        ("testing", "TESTING")
    );
    agent(&device).confirm(None).unwrap();
    assert!(has_line(
        &tool("bg_printenv", &["-f", env1, "-r"]),
        "USTATE=0"
    ));
}

fn uboot_device() -> FileDevice {
    FileDevice::with_bootloader(
        "[bootloader]\ntype = \"uboot\"\nfw_env_config = \"{d}/fw_env.config\"\n",
        |dir: &Path| {
            std::fs::write(
                dir.join("env.txt"),
                "keel_slot=A\nupgrade_available=0\nbootcount=0\nbootlimit=1\nbootcmd=run keel_boot\n",
            )
            .unwrap();
            for name in ["uboot.env", "uboot-redund.env"] {
                let out = dir.join(name);
                tool(
                    "mkenvimage",
                    &[
                        "-r",
                        "-s",
                        "0x4000",
                        "-o",
                        out.to_str().unwrap(),
                        dir.join("env.txt").to_str().unwrap(),
                    ],
                );
            }
            std::fs::write(
                dir.join("fw_env.config"),
                format!(
                    "{} 0x0 0x4000\n{} 0x0 0x4000\n",
                    dir.join("uboot.env").display(),
                    dir.join("uboot-redund.env").display()
                ),
            )
            .unwrap();
        },
    )
}

#[test]
fn uboot_environment_matches_fw_printenv_and_fw_setenv() {
    let device = uboot_device();
    let config = device.path("fw_env.config");
    let config = config.to_str().unwrap();
    install(&device);
    let printed = tool("fw_printenv", &["-c", config]);
    for line in [
        "keel_slot=B",
        "upgrade_available=1",
        "bootcount=0",
        "bootlimit=1",
        "ustate=1",
        "bootcmd=run keel_boot",
    ] {
        assert!(has_line(&printed, line), "{line} not in:\n{printed}");
    }
    // U-Boot's first boot of the trial, done by the real tool (CONFIG_BOOTCOUNT_ENV).
    tool("fw_setenv", &["-c", config, "bootcount", "1"]);
    boot_into(&device, "B", 2);
    let status = agent(&device).status().unwrap();
    assert_eq!(
        (status.state, status.ustate.as_str()),
        ("testing", "TESTING")
    );
    agent(&device).confirm(None).unwrap();
    let printed = tool("fw_printenv", &["-c", config]);
    assert!(
        has_line(&printed, "upgrade_available=0") && has_line(&printed, "ustate=0"),
        "{printed}"
    );

    // A second install (from B, into A), then altbootcmd's fallback written by the real tool.
    install(&device);
    assert!(has_line(
        &tool("fw_printenv", &["-c", config]),
        "keel_slot=A"
    ));
    tool("fw_setenv", &["-c", config, "bootcount", "1"]);
    boot_into(&device, "A", 3);
    tool("fw_setenv", &["-c", config, "keel_slot", "B"]);
    tool("fw_setenv", &["-c", config, "upgrade_available", "0"]);
    tool("fw_setenv", &["-c", config, "ustate", "3"]);
    boot_into(&device, "B", 4);
    let status = agent(&device).status().unwrap();
    assert_eq!(
        status.last_result.unwrap().outcome,
        keel_agent::state::Outcome::RolledBack
    );
    assert_eq!(status.ustate.as_str(), "FAILED");
}

#[test]
fn grub_environment_matches_grub_editenv() {
    let device = FileDevice::with_bootloader(
        "[bootloader]\ntype = \"grub\"\ngrubenv = \"{d}/grubenv\"\n",
        |dir: &Path| {
            let env = dir.join("grubenv");
            let env = env.to_str().unwrap();
            tool("grub-editenv", &[env, "create"]);
            tool(
                "grub-editenv",
                &[
                    env,
                    "set",
                    "ORDER=A B",
                    "A_OK=1",
                    "A_TRY=1",
                    "B_OK=0",
                    "B_TRY=0",
                ],
            );
        },
    );
    let env = device.path("grubenv");
    let env = env.to_str().unwrap();
    // Slot A is on trial (booted, `A_TRY=1`, not installed by keel): an install would reset
    // `A_TRY` and so mark A good without a health check. Refused, env untouched, like EBG.
    let before = tool("grub-editenv", &[env, "list"]);
    let status = agent(&device).status().unwrap();
    assert_eq!(status.ustate.as_str(), "TESTING");
    let bundle = device.bundle("2.0", &image(11, 100_000));
    let err = agent(&device)
        .install(&bundle[..], InstallOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("slot A is in TESTING: confirm it"), "{err}");
    assert_eq!(tool("grub-editenv", &[env, "list"]), before);
    agent(&device).confirm(None).unwrap();
    install(&device);
    let listed = tool("grub-editenv", &[env, "list"]);
    for line in ["ORDER=B A", "B_OK=1", "B_TRY=0", "A_OK=1", "A_TRY=0"] {
        assert!(has_line(&listed, line), "{line} not in:\n{listed}");
    }
    // grub.cfg's save_env on the first boot of B.
    tool("grub-editenv", &[env, "set", "B_TRY=1"]);
    boot_into(&device, "B", 2);
    let status = agent(&device).status().unwrap();
    assert_eq!(
        (status.state, status.ustate.as_str()),
        ("testing", "TESTING")
    );
    agent(&device).confirm(None).unwrap();
    assert!(has_line(&tool("grub-editenv", &[env, "list"]), "B_TRY=0"));
    assert_eq!(std::fs::metadata(env).unwrap().len(), 1024);
}

/// A successful install (not booted yet) followed by a failed one: the second install withdrew
/// the first activation (the loader boots the running slot again), so `ustate=1` must go too, and
/// the environment and `status` agree.
#[test]
fn uboot_failed_install_after_an_unbooted_one_leaves_no_installed_ustate() {
    let device = uboot_device();
    let config = device.path("fw_env.config");
    let config = config.to_str().unwrap();
    install(&device);
    assert!(has_line(&tool("fw_printenv", &["-c", config]), "ustate=1"));
    let bundle = device.bundle("3.0", &image(12, 100_000));
    agent(&device)
        .install(&bundle[..bundle.len() - 50_000], InstallOptions::default())
        .unwrap_err();
    let printed = tool("fw_printenv", &["-c", config]);
    for line in ["keel_slot=A", "upgrade_available=0", "ustate=0"] {
        assert!(has_line(&printed, line), "{line} not in:\n{printed}");
    }
    let status = agent(&device).status().unwrap();
    assert_eq!(
        (status.state, status.ustate.as_str(), status.next_boot),
        ("idle", "OK", Some(keel_agent::SlotId::A))
    );
}
