//! `swupdate -K` key file parser and AES-256-CBC stream decryption on arbitrary bytes.
//! Input: key file text up to the first 0x00 byte, the rest is ciphertext. Checks that parsing never panics,
//! that DecryptWriter and DecryptReader agree, and that re-encrypting a successful decryption gives the
//! ciphertext back (CBC with PKCS#7 is a bijection on valid inputs).
#![no_main]

use keel_sign::aes::{encrypted_len, AesKey, DecryptReader, DecryptWriter, EncryptWriter};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, rest) = data.split_at(split);
    let ciphertext = rest.get(1..).unwrap_or(&[]);

    let key = match AesKey::parse_keyfile(&String::from_utf8_lossy(text)) {
        Ok(k) => {
            assert_eq!(AesKey::parse_keyfile(&k.to_keyfile()).ok(), Some(k.clone()));
            k
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            AesKey {
                key: [0x42; 32],
                iv: [0x24; 16],
            }
        }
    };

    let mut writer = DecryptWriter::new(Vec::new(), &key.key, &key.iv);
    // Uneven write sizes driven by the data itself.
    let step = usize::from(ciphertext.first().copied().unwrap_or(1)).max(1);
    for chunk in ciphertext.chunks(step) {
        writer
            .write_all(chunk)
            .expect("writing to a Vec does not fail");
    }
    let by_writer = writer.finish();

    let mut by_reader = Vec::new();
    let reader_result =
        DecryptReader::new(ciphertext, &key.key, &key.iv).read_to_end(&mut by_reader);

    match (by_writer, reader_result) {
        (Ok(plain), Ok(_)) => {
            assert_eq!(plain, by_reader);
            assert_eq!(encrypted_len(plain.len() as u64), ciphertext.len() as u64);
            let mut enc = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
            enc.write_all(&plain).unwrap();
            assert_eq!(enc.finish().unwrap(), ciphertext);
        }
        (Err(_), Err(_)) => {}
        (w, r) => panic!(
            "writer and reader disagree: {:?} vs {:?}",
            w.is_ok(),
            r.is_ok()
        ),
    }
});
