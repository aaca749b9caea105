//! AES-256-CBC streams cross-checked byte for byte with `openssl enc -aes-256-cbc -K .. -iv ..`
//! (the command SWUpdate's documentation uses to encrypt images for `-K`).

use crate::common;

use keel_sign::aes::{
    encrypted_len, AesKey, DecryptReader, DecryptWriter, EncryptWriter, KeyFileError,
};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn openssl_enc(data: &[u8], key: &AesKey, decrypt: bool) -> (bool, Vec<u8>) {
    let keyfile = key.to_keyfile();
    let mut fields = keyfile.split_whitespace();
    let (k, iv) = (fields.next().unwrap(), fields.next().unwrap());
    let mut args = vec!["enc", "-aes-256-cbc", "-K", k, "-iv", iv];
    if decrypt {
        args.push("-d");
    }
    let mut child = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (out.status.success(), out.stdout)
}

fn test_key() -> AesKey {
    // A fixed, arbitrary key; the bytes are derived, not hand-typed.
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    for (i, b) in iv.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(91).wrapping_add(3);
    }
    AesKey { key, iv }
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const SIZES: [usize; 9] = [0, 1, 15, 16, 17, 31, 4096, 65_537, 1 << 20];

#[test]
fn encryption_matches_openssl_byte_for_byte() {
    let key = test_key();
    for len in SIZES {
        let plain = pattern(len);
        let (ok, expected) = openssl_enc(&plain, &key, false);
        assert!(ok, "openssl enc failed for {len} bytes");
        let mut writer = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
        // Odd write sizes exercise the block buffering.
        for chunk in plain.chunks(1000) {
            writer.write_all(chunk).unwrap();
        }
        let ours = writer.finish().unwrap();
        assert_eq!(ours.len() as u64, encrypted_len(len as u64), "{len}");
        assert!(
            ours == expected,
            "ciphertext differs from openssl for {len} bytes"
        );
    }
}

#[test]
fn decryption_of_openssl_output() {
    let key = test_key();
    for len in SIZES {
        let plain = pattern(len);
        let (ok, cipher) = openssl_enc(&plain, &key, false);
        assert!(ok);
        let mut writer = DecryptWriter::new(Vec::new(), &key.key, &key.iv);
        for chunk in cipher.chunks(777) {
            writer.write_all(chunk).unwrap();
        }
        assert!(
            writer.finish().unwrap() == plain,
            "DecryptWriter differs for {len} bytes"
        );

        let mut reader = DecryptReader::new(&cipher[..], &key.key, &key.iv);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert!(out == plain, "DecryptReader differs for {len} bytes");

        // And openssl decrypts ours.
        let ours = {
            let mut w = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
            w.write_all(&plain).unwrap();
            w.finish().unwrap()
        };
        let (ok, back) = openssl_enc(&ours, &key, true);
        assert!(
            ok && back == plain,
            "openssl could not decrypt ours for {len} bytes"
        );
    }
}

#[test]
fn bad_padding_and_length_rejected_like_openssl() {
    let key = test_key();
    let plain = pattern(100);
    let (_, cipher) = openssl_enc(&plain, &key, false);

    let mut wrong_key = key.clone();
    wrong_key.key[0] ^= 0xff;
    // Corrupt the last block: the padding no longer checks out (for this data and key: checked against openssl).
    let mut corrupted = cipher.clone();
    let n = corrupted.len();
    corrupted[n - 20] ^= 0x55;
    let truncated = cipher[..cipher.len() - 3].to_vec();

    for (what, data, k) in [
        ("wrong key", &cipher, &wrong_key),
        ("corrupted", &corrupted, &key),
        ("truncated", &truncated, &key),
    ] {
        let (openssl_ok, _) = openssl_enc(data, k, true);
        assert!(!openssl_ok, "{what}: openssl was expected to fail");
        let mut writer = DecryptWriter::new(Vec::new(), &k.key, &k.iv);
        writer.write_all(data).unwrap();
        let err = writer.finish().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{what}");
        assert!(err.to_string().starts_with("AES-CBC:"), "{what}: {err}");
        let mut out = Vec::new();
        let err = DecryptReader::new(&data[..], &k.key, &k.iv)
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{what}");
    }
}

#[test]
fn keyfile_as_openssl_rand_writes_it() {
    // `openssl rand -hex 32` / `-hex 16` is how the SWUpdate docs create the -K file.
    let dir = tempfile::tempdir().unwrap();
    let k = common::openssl(dir.path(), &["rand", "-hex", "32"]).stdout;
    let iv = common::openssl(dir.path(), &["rand", "-hex", "16"]).stdout;
    let text = format!(
        "{} {}\n",
        String::from_utf8(k).unwrap().trim(),
        String::from_utf8(iv).unwrap().trim()
    );
    let key = AesKey::parse_keyfile(&text).unwrap();
    assert_eq!(key.to_keyfile(), text);
    assert_eq!(AesKey::parse_keyfile("").unwrap_err(), KeyFileError::Empty);
    let err = AesKey::parse_keyfile(&text.replace(' ', "")).unwrap_err();
    assert!(err.to_string().contains("has a key but no IV"), "{err}");
}

/// The test vector printed in docs/signing.md, checked against openssl.
#[test]
fn documented_test_vector() {
    let key = AesKey::parse_keyfile(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f f0e0d0c0b0a090807060504030201000\n",
    )
    .unwrap();
    let plain = b"keel swupdate aes-256-cbc test vector\n";
    let (ok, expected) = openssl_enc(plain, &key, false);
    assert!(ok);
    let mut w = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
    w.write_all(plain).unwrap();
    let ours = w.finish().unwrap();
    assert_eq!(ours, expected);
    let hex = hex::encode(&ours);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/signing.md"
    ))
    .expect("docs/signing.md exists");
    assert!(
        doc.contains(&hex),
        "docs/signing.md must list the ciphertext {hex}"
    );
}
