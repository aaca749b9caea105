//! Running the real tools (openssl, swupdate, cpio, fw_printenv, …). A missing tool fails the
//! test (scripts/setup-debian.sh installs them), it never skips.

use std::process::{Command, Output};

/// Runs `cmd` to completion; panics naming it if it cannot be started. Its exit status is the
/// caller's to check.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? scripts/setup-debian.sh)")
    })
}

/// Runs `cmd`; panics with its exit status, stdout and stderr unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}: stdout={} stderr={}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
