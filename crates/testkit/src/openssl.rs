//! The real `openssl` command line. A missing openssl fails the test (scripts/setup-debian.sh
//! installs it), it never skips.

use std::path::Path;
use std::process::{Command, Output};

fn output(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/setup-debian.sh)")
}

/// Runs `openssl args…` in `dir`; panics (fails the test) with openssl's stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = output(dir, args);
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `openssl args…` in `dir`: whether it succeeded, and its stderr.
pub fn openssl_status(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = output(dir, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
