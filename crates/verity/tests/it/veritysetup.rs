//! Cross-checks with Debian's `veritysetup` (cryptsetup-bin): byte-identical hash devices and
//! root hashes for the same salt and UUID, each tool accepting the other's trees, and tampering
//! found at the right block.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_verity::{Error, Params, Superblock};

const UUID: &str = "6d1f5b2e-8f9c-4a7e-9d3b-2c5e7a1f0b44";

fn veritysetup(args: &[&str]) -> std::process::Output {
    Command::new("veritysetup")
        .args(args)
        .output()
        .expect("veritysetup not found: install cryptsetup-bin (scripts/setup-debian.sh does)")
}

/// Deterministic, non-repeating image content (xorshift), so every block hashes differently.
fn image(dir: &Path, name: &str, blocks: usize, block: usize) -> PathBuf {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ blocks as u64;
    let data: Vec<u8> = (0..blocks * block)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn params(salt: &[u8], data_block: u32, hash_block: u32) -> Params {
    Params {
        data_block_size: data_block,
        hash_block_size: hash_block,
        salt: salt.to_vec(),
        uuid: UUID.parse().unwrap(),
        threads: 2,
    }
}

fn keel_format(image: &Path, out: &Path, p: &Params) -> [u8; 32] {
    let mut data = std::fs::File::open(image).unwrap();
    let size = data.metadata().unwrap().len();
    let mut file = std::fs::File::create(out).unwrap();
    keel_verity::format(&mut data, size, p, &mut file)
        .unwrap()
        .root_hash
}

fn root_hash_line(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in veritysetup output: {text}"))
        .trim()
        .to_string()
}

fn keel_verify(image: &Path, hash: &Path, root: &[u8; 32]) -> Result<(), Error> {
    let device = std::fs::read(hash).unwrap();
    let mut data = std::fs::File::open(image).unwrap();
    keel_verity::verify(&mut data, &device, root, 2).map(|_| ())
}

#[test]
fn hash_devices_are_byte_identical_to_veritysetup_format() {
    let dir = tempfile::tempdir().unwrap();
    // Tree shapes: no level (1 block), one level exactly full, one spilling into a second
    // level, three levels; small hash blocks; no salt and the longest salt.
    let cases: &[(usize, u32, u32, Vec<u8>)] = &[
        (1, 4096, 4096, vec![0x5a; 32]),
        (128, 4096, 4096, vec![0x01, 0x02]),
        (129, 4096, 4096, vec![0xff; 32]),
        (16_385, 4096, 4096, vec![]),
        (700, 4096, 512, (0..=255).collect()),
        (3000, 1024, 1024, vec![0x42; 7]),
    ];
    for (n, (blocks, data_block, hash_block, salt)) in cases.iter().enumerate() {
        let img = image(dir.path(), "img", *blocks, *data_block as usize);
        let ours = dir.path().join(format!("ours-{n}"));
        // A new file per case: veritysetup writes into an existing file without truncating it.
        let theirs = dir.path().join(format!("theirs-{n}"));
        let p = params(salt, *data_block, *hash_block);
        let root = keel_format(&img, &ours, &p);
        let salt_arg = if salt.is_empty() {
            "-".to_string()
        } else {
            hex::encode(salt)
        };
        let out = veritysetup(&[
            "format",
            img.to_str().unwrap(),
            theirs.to_str().unwrap(),
            &format!("--salt={salt_arg}"),
            &format!("--uuid={UUID}"),
            &format!("--data-block-size={data_block}"),
            &format!("--hash-block-size={hash_block}"),
        ]);
        assert!(
            out.status.success(),
            "veritysetup format: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let case = format!(
            "{blocks} blocks of {data_block}, hash block {hash_block}, salt {} bytes",
            salt.len()
        );
        assert_eq!(hex::encode(root), root_hash_line(&out), "root hash, {case}");
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
            "hash device bytes, {case}"
        );
    }
}

#[test]
fn veritysetup_verifies_our_tree_and_we_verify_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "img", 5000, 4096);
    let ours = dir.path().join("ours");
    let root = keel_format(&img, &ours, &Params::random());
    let out = veritysetup(&[
        "verify",
        img.to_str().unwrap(),
        ours.to_str().unwrap(),
        &hex::encode(root),
    ]);
    assert!(
        out.status.success(),
        "veritysetup verify rejected our tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let theirs = dir.path().join("theirs");
    let out = veritysetup(&["format", img.to_str().unwrap(), theirs.to_str().unwrap()]);
    assert!(out.status.success());
    let their_root: [u8; 32] = hex::decode(root_hash_line(&out))
        .unwrap()
        .try_into()
        .unwrap();
    keel_verify(&img, &theirs, &their_root).expect("our verify rejects veritysetup's tree");
    // A random salt: the two trees differ but both verify.
    assert_ne!(their_root, root);
}

#[test]
fn tampering_is_found_at_the_right_block_by_us_and_by_veritysetup() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "img", 20_000, 4096); // two levels: 157 + 2 blocks... and a top
    let hash = dir.path().join("hash");
    let out = veritysetup(&["format", img.to_str().unwrap(), hash.to_str().unwrap()]);
    assert!(out.status.success());
    let root: [u8; 32] = hex::decode(root_hash_line(&out))
        .unwrap()
        .try_into()
        .unwrap();
    let device = std::fs::read(&hash).unwrap();
    let sb = Superblock::parse(&device).unwrap();
    let geometry = keel_verity::Geometry::new(sb.data_blocks, sb.hash_block_size).unwrap();
    assert_eq!(geometry.levels.len(), 3);

    let flip = |path: &Path, offset: u64| -> PathBuf {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x01;
        let copy = dir.path().join(format!("flipped-{offset}"));
        std::fs::write(&copy, bytes).unwrap();
        copy
    };
    let their_verify = |image: &Path, hash: &Path| {
        veritysetup(&[
            "verify",
            image.to_str().unwrap(),
            hash.to_str().unwrap(),
            &hex::encode(root),
        ])
        .status
        .success()
    };

    // A data block.
    let bad = flip(&img, 12_345 * 4096 + 17);
    match keel_verify(&bad, &hash, &root) {
        Err(Error::DataBlock { index, offset }) => {
            assert_eq!((index, offset), (12_345, 12_345 * 4096))
        }
        other => panic!("flipped data block 12345: {other:?}"),
    }
    assert!(!their_verify(&bad, &hash));

    // A level-0 hash block, a level-1 block, the top block.
    let level0 = geometry.levels[0].start_block * 4096 + 4096 * 3 + 5;
    match keel_verify(&img, &flip(&hash, level0), &root) {
        Err(Error::HashBlock {
            level: 0, index: 3, ..
        }) => {}
        other => panic!("flipped level-0 hash block 3: {other:?}"),
    }
    assert!(!their_verify(&img, &flip(&hash, level0)));
    let level1 = geometry.levels[1].start_block * 4096 + 100;
    assert!(matches!(
        keel_verify(&img, &flip(&hash, level1), &root),
        Err(Error::HashBlock {
            level: 1,
            index: 0,
            ..
        })
    ));
    let top = geometry.levels[2].start_block * 4096 + 9;
    assert!(matches!(
        keel_verify(&img, &flip(&hash, top), &root),
        Err(Error::RootHash { .. })
    ));
    assert!(!their_verify(&img, &flip(&hash, top)));

    // A wrong root hash, a truncated hash device, a truncated image, a broken superblock.
    let mut wrong = root;
    wrong[0] ^= 0x80;
    assert!(matches!(
        keel_verify(&img, &hash, &wrong),
        Err(Error::RootHash { .. })
    ));
    let short = dir.path().join("short-hash");
    std::fs::write(&short, &device[..device.len() - 4096]).unwrap();
    assert!(matches!(
        keel_verify(&img, &short, &root),
        Err(Error::HashTooShort { .. })
    ));
    let short_img = dir.path().join("short-img");
    std::fs::write(&short_img, &std::fs::read(&img).unwrap()[..4096 * 19_999]).unwrap();
    assert!(matches!(
        keel_verify(&short_img, &hash, &root),
        Err(Error::DataTooShort { have: 19_999, .. })
    ));
    assert!(matches!(
        keel_verify(&img, &flip(&hash, 1), &root),
        Err(Error::Superblock(_))
    ));
}

#[test]
fn a_partial_last_block_and_an_empty_image_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = Params::random();
    let mut sink = Vec::new();
    let err = keel_verity::format(&mut &[0u8; 4096 + 100][..], 4196, &p, &mut sink).unwrap_err();
    assert!(
        err.to_string()
            .contains("last 100 bytes would not be protected"),
        "{err}"
    );
    assert!(sink.is_empty(), "nothing written before the refusal");
    let err = keel_verity::format(&mut &[][..], 0, &p, &mut sink).unwrap_err();
    assert!(err.to_string().contains("no whole data block"), "{err}");
    // The stream ending before the size it announced.
    let img = image(dir.path(), "img", 3, 4096);
    let mut data = std::fs::File::open(img).unwrap();
    let err = keel_verity::format(&mut data, 4 * 4096, &p, &mut sink).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DataTooShort {
                have: 3,
                want: 4,
                ..
            }
        ),
        "{err}"
    );
}

/// The test vectors of docs/verity.md, recomputed by both tools and compared with the document.
#[test]
fn the_documented_test_vectors_hold() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/verity.md"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uuid = "00000000-0000-4000-8000-00000000006b";
    let v300: Vec<u8> = (0..300usize)
        .flat_map(|i| [(i % 256) as u8; 4096])
        .collect();
    let cases = [("v300", v300, "6b65656c"), ("v1", vec![0x6b; 4096], "-")];
    for (name, data, salt) in cases {
        let img = dir.path().join(name);
        std::fs::write(&img, &data).unwrap();
        let ours = dir.path().join(format!("{name}.ours"));
        let salt_bytes = if salt == "-" {
            vec![]
        } else {
            hex::decode(salt).unwrap()
        };
        let mut p = params(&salt_bytes, 4096, 4096);
        p.uuid = uuid.parse().unwrap();
        let root = hex::encode(keel_format(&img, &ours, &p));
        let theirs = dir.path().join(format!("{name}.theirs"));
        let out = veritysetup(&[
            "format",
            img.to_str().unwrap(),
            theirs.to_str().unwrap(),
            &format!("--salt={salt}"),
            &format!("--uuid={uuid}"),
        ]);
        assert_eq!(
            root,
            root_hash_line(&out),
            "{name}: root hash, keel vs veritysetup"
        );
        let device = std::fs::read(&ours).unwrap();
        assert!(
            device == std::fs::read(&theirs).unwrap(),
            "{name}: hash device bytes"
        );
        let device_sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&device))
        };
        assert!(
            doc.contains(&format!("root hash `{root}`")),
            "{name}: docs/verity.md lacks root hash {root}"
        );
        assert!(
            doc.contains(&format!("sha256 of the hash device `{device_sha}`")),
            "{name}: docs/verity.md lacks hash device sha256 {device_sha}"
        );
    }
}
