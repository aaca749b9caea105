//! AES-256-CBC throughput of keel-sign's streams vs `openssl enc -aes-256-cbc` on the same 256 MiB.
//! Run: cargo bench -p keel-sign --bench aes_throughput

use keel_sign::aes::{DecryptReader, EncryptWriter};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Instant;

const SIZE: usize = 256 << 20;

fn mib_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn main() {
    let key = [0x11u8; 32];
    let iv = [0x22u8; 16];
    let plain: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let plain_path = dir.path().join("plain");
    std::fs::write(&plain_path, &plain).unwrap();

    let start = Instant::now();
    let mut enc = EncryptWriter::new(Vec::with_capacity(SIZE + 16), &key, &iv);
    for chunk in plain.chunks(64 * 1024) {
        enc.write_all(chunk).unwrap();
    }
    let cipher = enc.finish().unwrap();
    let enc_secs = start.elapsed().as_secs_f64();
    let cipher_path = dir.path().join("cipher");
    std::fs::write(&cipher_path, &cipher).unwrap();

    let start = Instant::now();
    let mut reader = DecryptReader::new(&cipher[..], &key, &iv);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, SIZE);
    let dec_secs = start.elapsed().as_secs_f64();

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let openssl = |decrypt: bool, input: &std::path::Path| {
        let start = Instant::now();
        let mut cmd = Command::new("openssl");
        cmd.args([
            "enc",
            "-aes-256-cbc",
            "-K",
            &hex(&key),
            "-iv",
            &hex(&iv),
            "-out",
            "/dev/null",
            "-in",
        ])
        .arg(input);
        if decrypt {
            cmd.arg("-d");
        }
        assert!(cmd.status().expect("openssl installed").success());
        start.elapsed().as_secs_f64()
    };
    let ossl_enc = openssl(false, &plain_path);
    let ossl_dec = openssl(true, &cipher_path);

    println!("AES-256-CBC, {} MiB, 64 KiB writes/reads", SIZE >> 20);
    println!(
        "encrypt: keel {:.0} MiB/s, openssl enc {:.0} MiB/s (keel/openssl {:.2})",
        mib_per_s(SIZE, enc_secs),
        mib_per_s(SIZE, ossl_enc),
        ossl_enc / enc_secs
    );
    println!(
        "decrypt: keel {:.0} MiB/s, openssl enc -d {:.0} MiB/s (keel/openssl {:.2})",
        mib_per_s(SIZE, dec_secs),
        mib_per_s(SIZE, ossl_dec),
        ossl_dec / dec_secs
    );
}
