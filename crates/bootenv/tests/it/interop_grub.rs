//! GRUB: keel and grub-editenv 2.06 read each other's grubenv blocks.

use crate::common;

use common::{run, s, stdout};
use keel_bootenv::grub::{GrubEnv, GrubEnvFile, DEFAULT_SIZE};
use keel_bootenv::BootEnv;

/// The text `grub-editenv list` prints for (name, value) pairs.
fn listing(vars: &[(String, String)]) -> String {
    vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn grub_editenv_lists_keel_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let mut env = GrubEnvFile::open_path(&path).unwrap();
    env.set("ORDER", "A B").unwrap();
    env.set("A_OK", "1").unwrap();
    env.set("A_TRY", "0").unwrap();
    env.set("backslash", r"C:\path\to").unwrap();
    env.set("multi", "line1\nline2").unwrap();
    env.set("trailing", "ends with \\").unwrap();
    env.set("empty", "").unwrap();
    env.commit().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), DEFAULT_SIZE as u64);
    assert_eq!(
        stdout("grub-editenv", &[s(&path), "list"]),
        listing(&env.vars())
    );

    // Changing and removing variables keeps the block consistent for GRUB's reader.
    env.set("A_TRY", "1").unwrap();
    env.unset("backslash").unwrap();
    env.set("ORDER", "B A").unwrap();
    env.commit().unwrap();
    let vars = env.vars();
    assert_eq!(
        vars.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["ORDER", "A_OK", "A_TRY", "multi", "trailing", "empty"]
    );
    assert_eq!(stdout("grub-editenv", &[s(&path), "list"]), listing(&vars));
}

#[test]
fn keel_reads_grub_editenv_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let p = s(&path);
    run("grub-editenv", &[p, "create"]);
    run(
        "grub-editenv",
        &[
            p,
            "set",
            "ORDER=A B",
            "A_OK=1",
            "B_OK=0",
            r"esc=a\b",
            "nl=x\ny",
            "eq=k=v",
        ],
    );
    run("grub-editenv", &[p, "unset", "B_OK"]);
    run("grub-editenv", &[p, "set", "A_OK=0"]);
    let bytes = std::fs::read(&path).unwrap();
    let env = GrubEnv::parse(&bytes).unwrap();
    let expected: Vec<(&[u8], &[u8])> = vec![
        (b"ORDER", b"A B"),
        (b"A_OK", b"0"),
        (b"esc", br"a\b"),
        (b"nl", b"x\ny"),
        (b"eq", b"k=v"),
    ];
    let got: Vec<(&[u8], &[u8])> = env
        .entries()
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    assert_eq!(got, expected);
    let file = GrubEnvFile::open_path(&path).unwrap();
    assert_eq!(stdout("grub-editenv", &[p, "list"]), listing(&file.vars()));

    // keel rewrites a grub-editenv block (dropping its comment line); grub-editenv agrees.
    let mut file = file;
    file.set("keel", "yes").unwrap();
    file.commit().unwrap();
    assert_eq!(stdout("grub-editenv", &[p, "list"]), listing(&file.vars()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), DEFAULT_SIZE as u64);
}
