//! `keel image verity` / `verity-verify` as a release build runs them, checked by veritysetup.

use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verity_tree_passes_veritysetup_verify_and_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("rootfs.img");
    let tree = dir.path().join("rootfs.verity");
    let data: Vec<u8> = (0..2000u32)
        .flat_map(|i| i.to_le_bytes().repeat(1024))
        .collect();
    std::fs::write(&img, &data).unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();

    let out = keel(&["image", "verity", &p(&img), "-o", &p(&tree)]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("root hash: "))
        .expect("root hash line")
        .to_string();
    let salt = stdout
        .lines()
        .find_map(|l| l.strip_prefix("salt: "))
        .expect("salt line");
    assert_eq!((root.len(), salt.len()), (64, 64), "{stdout}");

    let vs = Command::new("veritysetup")
        .args(["verify", &p(&img), &p(&tree), &root])
        .output()
        .expect("veritysetup (cryptsetup-bin) is installed by scripts/setup-debian.sh");
    assert!(vs.status.success(), "veritysetup verify: {}", text(&vs));
    let out = keel(&["image", "verity-verify", &p(&img), &p(&tree), &root]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("verified: 2000 data blocks"),
        "{}",
        text(&out)
    );

    // One flipped byte in data block 777.
    let mut bad = data.clone();
    bad[777 * 4096 + 1] ^= 0x40;
    let bad_img = dir.path().join("bad.img");
    std::fs::write(&bad_img, bad).unwrap();
    let out = keel(&["image", "verity-verify", &p(&bad_img), &p(&tree), &root]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(
            "data block 777 (byte offset 3182592 of the data image) does not match its hash"
        ),
        "{}",
        text(&out)
    );

    // JSON output, fixed salt and UUID: reproducible.
    let run = || {
        let out = keel(&[
            "image",
            "verity",
            &p(&img),
            "-o",
            &p(&tree),
            "--salt",
            "00ff",
            "--uuid",
            "11111111-2222-4333-8444-555555555555",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert_eq!(a["salt"], "00ff");
    assert_eq!(a["data_blocks"], 2000);
    assert_eq!(a["hash_device_size"], (1 + 1 + 16) * 4096);

    // Bad input: clear messages, nothing written.
    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, [0u8; 5000]).unwrap();
    let out_path = dir.path().join("odd.verity");
    let out = keel(&["image", "verity", &p(&odd), "-o", &p(&out_path)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("last 904 bytes would not be protected; pad the image"),
        "{}",
        text(&out)
    );
    assert!(
        !out_path.exists()
            && std::fs::read_dir(dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("keel-tmp"))
    );
    let out = keel(&["image", "verity-verify", &p(&img), &p(&tree), "abc"]);
    assert!(
        text(&out).contains("root hash \"abc\" is not 64 hexadecimal digits"),
        "{}",
        text(&out)
    );
    let out = keel(&["image", "verity-verify", &p(&img), &p(&img), &root]);
    assert!(
        text(&out).contains("no `verity` signature at offset 0"),
        "{}",
        text(&out)
    );
}
