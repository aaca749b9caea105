//! The test vectors printed in docs/bootenv.md: keel produces exactly these bytes, and the
//! real tools (bg_printenv, fw_printenv) read them as documented.

use crate::common;

use std::path::Path;

use common::{s, stdout};
use keel_bootenv::ebg::{BgEnv, UState, UserVar};
use keel_bootenv::storage::FsStorage;
use keel_bootenv::uboot::{FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::BootEnv;

/// Reverses `xxd -a` output (a `*` line stands for repeated all-zero lines).
fn unxxd(dump: &str, total: usize) -> Vec<u8> {
    let mut out = vec![0u8; total];
    for line in dump
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "*")
    {
        let (offset, rest) = line.split_once(": ").expect("xxd line");
        let offset = usize::from_str_radix(offset, 16).expect("xxd offset");
        let hex: String = rest
            .get(..40)
            .unwrap_or(rest)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            out[offset + i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
    }
    out
}

/// The fenced block following `marker` in docs/bootenv.md.
fn doc_block(marker: &str) -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bootenv.md"),
    )
    .expect("docs/bootenv.md");
    let start = doc
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker} in docs/bootenv.md"));
    let block = &doc[start..];
    let open = block.find("```").unwrap() + 3;
    let body = &block[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// `xxd -a` of a file (zero lines repeated after the first collapse to `*`), for the
/// message that shows the current dump when the documented vector is stale.
fn xxd(file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for (n, line) in bytes.chunks(16).enumerate() {
        let zero = line.iter().all(|&b| b == 0) && line.len() == 16;
        let last = (n + 1) * 16 >= bytes.len();
        let prev_zero = n > 0 && bytes[(n - 1) * 16..n * 16].iter().all(|&b| b == 0);
        if zero && prev_zero && !last {
            if !skipping {
                out.push_str("*\n");
                skipping = true;
            }
            continue;
        }
        skipping = false;
        let hex: Vec<String> = line
            .chunks(2)
            .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}: {:<40} {ascii}\n", n * 16, hex.join(" ")));
    }
    out
}

pub fn ebg_vector() -> BgEnv {
    let mut env = BgEnv::new();
    env.kernelfile = "C:BOOT1:vmlinuz".into();
    env.kernelparams = "root=/dev/sda5 ro".into();
    env.ustate = UState::INSTALLED;
    env.watchdog_timeout_sec = 60;
    env.revision = 7;
    env.uservars.push(UserVar::string("keel_slot", "B"));
    env
}

#[test]
fn ebg_vector_matches_docs_and_bg_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("BGENV.DAT");
    let bytes = ebg_vector().to_bytes().unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let dump = xxd(&file);
    println!(
        "BGENV.DAT:\n{dump}bg_printenv -r:\n{}",
        stdout("bg_printenv", &["-f", s(&file), "-r"])
    );
    let documented = doc_block("<!-- vector:ebg -->");
    assert!(
        unxxd(&documented, bytes.len()) == bytes,
        "docs/bootenv.md EBG vector is stale; current dump:\n{dump}"
    );
    let printed = stdout("bg_printenv", &["-f", s(&file), "-r"]);
    assert_eq!(printed, doc_block("<!-- vector:ebg-printenv -->"));
}

#[test]
fn uboot_vector_matches_docs_and_fw_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let (p0, p1) = (dir.path().join("env0.bin"), dir.path().join("env1.bin"));
    let config = FwEnvConfig::redundant((p0.clone(), 0), (p1.clone(), 0), 0x40);
    let cfg = dir.path().join("fw_env.config");
    std::fs::write(&cfg, config.to_config_string()).unwrap();
    let initial: Vars = [("slot", "a"), ("upgrade_available", "0")]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let mut env = UbootEnv::provision(FsStorage::shared(), config, &initial).unwrap();
    env.set("slot", "b").unwrap();
    env.set("upgrade_available", "1").unwrap();
    env.set("bootcount", "0").unwrap();
    env.commit().unwrap();
    let (d0, d1) = (xxd(&p0), xxd(&p1));
    println!(
        "copy 0:\n{d0}copy 1:\n{d1}fw_printenv:\n{}",
        stdout("fw_printenv", &["-c", s(&cfg)])
    );
    assert!(
        unxxd(&doc_block("<!-- vector:uboot-copy0 -->"), 0x40) == std::fs::read(&p0).unwrap(),
        "copy 0 stale; dump:\n{d0}"
    );
    assert!(
        unxxd(&doc_block("<!-- vector:uboot-copy1 -->"), 0x40) == std::fs::read(&p1).unwrap(),
        "copy 1 stale; dump:\n{d1}"
    );
    assert_eq!(
        stdout("fw_printenv", &["-c", s(&cfg)]),
        doc_block("<!-- vector:uboot-printenv -->")
    );
}
