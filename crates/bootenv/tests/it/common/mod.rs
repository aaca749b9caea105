//! Helpers shared by the integration tests: running the real Debian tools. A missing tool
//! fails the test (the test command installs them), it never skips.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tool args…`; panics with the tool's output if it cannot be started or fails.
pub fn run(tool: &str, args: &[&str]) -> Output {
    keel_testkit::cmd::run_ok(Command::new(tool).args(args))
}

/// Stdout of a successful run, as text.
pub fn stdout(tool: &str, args: &[&str]) -> String {
    String::from_utf8(run(tool, args).stdout).expect("tool output is UTF-8")
}

/// `path` as &str (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// zlib's CRC-32 of `data` computed by Python, an independent implementation.
pub fn python_crc32_ok(file: &Path) -> bool {
    let out = stdout(
        "python3",
        &[
            "-c",
            "import sys,zlib; d=open(sys.argv[1],'rb').read(); print(zlib.crc32(d[:-4]) == int.from_bytes(d[-4:],'little'))",
            s(file),
        ],
    );
    out.trim() == "True"
}
