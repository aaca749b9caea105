//! Debian's real `swupdate` as a hawkBit client (suricatta) of the test server: its release signer,
//! starting and stopping it, and reading the action history it leaves.
#![allow(dead_code)]

use keel_testkit::pki::{Identity, KeyKind, Pki};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Runs a command; panics with its output if it fails or is missing.
pub use keel_testkit::cmd::run_ok as run;

/// A throwaway RSA release signer in `dir` (`key.pem`, `cert.pem`: swupdate runs with `-k cert.pem`).
pub fn make_signer(dir: &Path) -> Identity {
    Pki::in_dir(dir)
        .cert("signer")
        .key_kind(KeyKind::Rsa2048)
        .subject("/O=keel/CN=keel test signer")
        .days(2)
        .files("cert.pem", "key.pem")
        .self_signed()
}

/// Starts `swupdate -u` (suricatta) against `base` as controller `sw1` with target token `token`,
/// in its own process group (it forks suricatta and a downloader); log in `dir/swupdate<extra>.log`.
pub fn suricatta(dir: &Path, base: &str, token: &str, extra: &str) -> Child {
    use std::os::unix::process::CommandExt;
    let log =
        std::fs::File::create(dir.join(format!("swupdate{}.log", extra.replace(' ', "")))).unwrap();
    Command::new("swupdate")
        .args(["-v", "-H", "keel:1.0", "-k", "cert.pem"])
        .arg("-u")
        .arg(format!("-t default -u {base} -i sw1 -k {token} {extra}"))
        .env("TMPDIR", dir)
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("swupdate (Debian package swupdate)")
}

/// SIGTERM to the whole process group, SIGKILL after 5 s.
pub fn stop_group(mut child: Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every feedback message of a management API action (its `history`), oldest first.
pub fn messages(action: &Value) -> Vec<String> {
    action["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
        })
        .collect()
}
