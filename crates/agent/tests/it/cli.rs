//! The `keel-agent` binary on real files: install from stdin, status (text and JSON), reboot
//! (EFI Boot Guard loader model on the real BGENV.DAT files), confirm; rollback reported by
//! status; unsigned and tampered bundles rejected with a non-zero exit.

use crate::common;

use common::{image, FileDevice};

#[test]
fn stdin_install_reboot_confirm_ok() {
    let device = FileDevice::new();
    let rootfs = image(42, 200_000);
    let bundle = device.bundle("2.0", &rootfs);

    let out = device.install_stdin(&bundle);
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot_b = std::fs::read(device.path("rootfs-b.img")).unwrap();
    assert_eq!(&slot_b[..rootfs.len()], &rootfs[..]);

    let status = device.status_json();
    assert_eq!(status["booted_slot"], "A");
    assert_eq!(status["state"], "installed");
    assert_eq!(status["ustate"], "INSTALLED");
    assert_eq!(status["pending"]["target_slot"], "B");
    assert_eq!(status["pending"]["version"], "2.0");
    // The text names the phase with the word the JSON uses (not Rust's `Activated`).
    assert_eq!(status["pending"]["phase"], "activated");
    let out = device.agent_cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pending:      A -> B (activated) version 2.0"),
        "{text}"
    );

    assert!(device.reboot(2).contains("keel.slot=B"));
    let status = device.status_json();
    assert_eq!(status["booted_slot"], "B");
    assert_eq!(status["state"], "testing");
    assert_eq!(status["ustate"], "TESTING");

    let out = device
        .agent_cmd()
        .args(["confirm", "--health-check", "test -f /proc/self/status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "confirm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = device.status_json();
    assert_eq!(status["ustate"], "OK");
    assert_eq!(status["last_result"]["outcome"], "success");

    // Text output names the same facts.
    let out = device.agent_cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("booted slot:  B") && text.contains("last result:  success"),
        "{text}"
    );

    assert!(device.reboot(3).contains("keel.slot=B"));
}

#[test]
fn unconfirmed_boot_is_reported_as_rolled_back() {
    let device = FileDevice::new();
    let bundle = device.bundle("2.0", &image(43, 100_000));
    assert!(device.install_stdin(&bundle).status.success());
    assert!(device.reboot(2).contains("keel.slot=B"));
    // No confirm: the second boot falls back to A.
    assert!(device.reboot(3).contains("keel.slot=A"));
    let status = device.status_json();
    assert_eq!(status["booted_slot"], "A");
    assert_eq!(status["ustate"], "FAILED");
    assert_eq!(status["last_result"]["outcome"], "rolled_back");
    let out = device.agent_cmd().arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("last result:  rolled back"));
}

#[test]
fn unsigned_and_tampered_bundles_fail() {
    let device = FileDevice::new();
    let rootfs = image(44, 100_000);
    let bundle = device.bundle("2.0", &rootfs);

    // Unsigned: the same archive without sw-description.sig.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("rootfs.img"), &rootfs).unwrap();
    let spec = keel_bundle::BundleSpec::from_manifest_str(
        "[software]\nversion = \"2.0\"\n[[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"rootfs\"\n",
        work.path(),
    )
    .unwrap();
    let mut unsigned = Vec::new();
    keel_bundle::create(&spec, &keel_bundle::CreateOptions::default(), &mut unsigned).unwrap();
    let out = device.install_stdin(&unsigned);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed"));

    // Truncated in the middle of the image: never activated.
    let out = device.install_stdin(&bundle[..bundle.len() - 50_000]);
    assert!(!out.status.success());
    let status = device.status_json();
    assert_eq!(status["last_result"]["outcome"], "failed");
    assert_eq!(status["next_boot"], "A");
    assert!(device.reboot(2).contains("keel.slot=A"));
}

#[test]
fn second_agent_is_refused_while_one_holds_the_lock() {
    let device = FileDevice::new();
    let config = keel_agent::Config::load(&device.config_path).unwrap();
    let holder = keel_agent::Agent::open_os(config).unwrap();
    let _lock = holder.lock().unwrap();
    let out = device.install_stdin(&device.bundle("2.0", &image(45, 10_000)));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another keel-agent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // status still answers while an install holds the lock.
    assert_eq!(device.status_json()["booted_slot"], "A");
}

/// An install killed in this very boot (kill -9, OOM) leaves `installing` behind; with no agent
/// holding the lock it is stale: reported failed, and a new install goes ahead.
#[test]
fn install_killed_in_this_boot_is_not_in_progress_forever() {
    let device = FileDevice::new();
    std::fs::create_dir_all(device.path("state")).unwrap();
    std::fs::write(
        device.path("state/state.json"),
        r#"{"format":1,"transaction":{"phase":"installing","from_slot":"A","target_slot":"B","started_at":1,"boot_id":"boot-1"}}"#,
    )
    .unwrap();
    let status = device.status_json();
    assert_eq!(status["state"], "idle");
    assert_eq!(status["last_result"]["outcome"], "failed");
    assert!(status["last_result"]["message"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert!(device
        .install_stdin(&device.bundle("2.0", &image(46, 10_000)))
        .status
        .success());
    assert_eq!(device.status_json()["state"], "installed");
}

/// A `run` killed while installing a DDI action (or cut off by a power loss) does not fail the
/// action: `status` shows the interrupted attempt (installed again by `run`), no failed result.
/// With `max_interrupted_attempts = 1` the first interruption already is the action's failure.
#[test]
fn interrupted_ddi_install_is_counted_not_failed() {
    let killed = r#"{"format":1,"transaction":{"phase":"installing","from_slot":"A","target_slot":"B","version":"2.0","action_id":"17","started_at":1,"boot_id":"boot-1"}}"#;
    let device = FileDevice::new();
    std::fs::create_dir_all(device.path("state")).unwrap();
    std::fs::write(device.path("state/state.json"), killed).unwrap();
    let status = device.status_json();
    assert_eq!(status["state"], "idle");
    assert_eq!(status["pending"], serde_json::Value::Null);
    assert_eq!(status["last_result"], serde_json::Value::Null);
    assert_eq!(status["interrupted"]["action_id"], "17");
    assert_eq!(status["interrupted"]["attempts"], 1);
    let text = device.agent_cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("interrupted:  action 17, 1 attempt(s) of at most 3"),
        "{text}"
    );

    let config = std::fs::read_to_string(&device.config_path).unwrap();
    std::fs::write(
        &device.config_path,
        format!("max_interrupted_attempts = 1\n{config}"),
    )
    .unwrap();
    std::fs::write(device.path("state/state.json"), killed).unwrap();
    let status = device.status_json();
    assert_eq!(status["interrupted"], serde_json::Value::Null);
    assert_eq!(status["last_result"]["outcome"], "failed");
    assert_eq!(status["last_result"]["action_id"], "17");
    assert!(status["last_result"]["message"]
        .as_str()
        .unwrap()
        .contains("install interrupted once"));
}

#[test]
fn version_and_help_print_and_exit_zero() {
    let run = |arg: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keel-agent"))
            .arg(arg)
            .output()
            .unwrap()
    };
    for arg in ["--version", "-V"] {
        let out = run(arg);
        assert!(out.status.success(), "{arg}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("keel-agent {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    let out = run("--help");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("-V, --version"));
}

/// The configuration the Debian package installs as /etc/keel/agent.toml is a valid one.
#[test]
fn packaged_example_configuration_parses() {
    let text = include_str!("../../../../packaging/etc/agent.toml");
    let config = keel_agent::Config::parse(text).expect("packaging/etc/agent.toml parses");
    assert_eq!(config.state_dir, std::path::PathBuf::from("/var/lib/keel"));
}
